"""Auto-detection picks the right language for realistic snippets (worker/language.py)."""

from __future__ import annotations

import pytest
from pygments.lexers import guess_lexer

from shared.kinds.highlight import render
from shared.kinds.highlight.language import detect_language, detect_lexer

PYTHON = [
    "import os\nprint('<b>hi</b>')\n",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
    "    def __repr__(self):\n        return f\"Point({self.x}, {self.y})\"\n",
    "#!/usr/bin/env python3\nimport sys\n\nfor line in sys.stdin:\n    print(line.upper(), end='')\n",
    "with open('data.csv') as fh:\n    rows = [line.split(',') for line in fh]\n"
    "total = sum(float(r[2]) for r in rows)\n",
    "from dataclasses import dataclass\n\n@dataclass\nclass User:\n    name: str\n    age: int = 0\n",
    "numbers = [n * n for n in range(10) if n % 2 == 0]\nprint(sum(numbers))\n",
    "try:\n    port = int(os.environ['PORT'])\nexcept (KeyError, ValueError):\n    port = 8000\n",
]
JAVASCRIPT = [
    "const items = [1, 2, 3];\nconst doubled = items.map(x => x * 2);\nconsole.log(doubled);\n",
    "function debounce(fn, ms) {\n  let timer;\n  return function (...args) {\n"
    "    clearTimeout(timer);\n    timer = setTimeout(() => fn.apply(this, args), ms);\n  };\n}\n",
    "document.getElementById('go').addEventListener('click', async () => {\n"
    "  const res = await fetch('/api/jobs', { method: 'POST' });\n"
    "  if (res.status !== 202) { alert('failed'); }\n});\n",
    "const express = require('express');\nconst app = express();\n"
    "app.get('/', (req, res) => res.send('<h1>Hello</h1>'));\napp.listen(3000);\n",
    "export default class Stack {\n  constructor() { this.items = []; }\n"
    "  push(x) { this.items.push(x); return this; }\n}\n",
]
SQL = [
    "SELECT name, email\nFROM users\nWHERE id = 42\nORDER BY name;\n",
    "SELECT 1;\n",
    "CREATE TABLE orders (\n  id INTEGER PRIMARY KEY,\n  user_id INTEGER NOT NULL REFERENCES users(id),\n"
    "  total NUMERIC(10, 2)\n);\n",
    "select u.name, count(*) as n\nfrom users u\nleft join orders o on o.user_id = u.id\n"
    "group by u.name\nhaving count(*) > 3;\n",
    "INSERT INTO logs (level, message) VALUES ('info', 'started');\n"
    "UPDATE jobs SET state = 'done' WHERE id = 7;\n",
]
HTML = [
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>Hi</title></head>\n"
    "<body><p>Hello</p></body>\n</html>\n",
    "<div class=\"card\">\n  <h2>Title</h2>\n  <p>Some <b>bold</b> text.</p>\n</div>\n",
    "<ul>\n  <li><a href=\"/\">Home</a></li>\n  <li><a href=\"/about\">About</a></li>\n</ul>\n",
    "<form method=\"post\" action=\"/login\">\n  <label for=\"u\">User</label>\n"
    "  <input id=\"u\" name=\"user\">\n  <button type=\"submit\">Log in</button>\n</form>\n",
]
SHELL = [
    "#!/bin/bash\nset -euo pipefail\nfor f in *.log; do\n  gzip \"$f\"\ndone\n",
    "sudo apt-get update\nsudo apt-get install -y nginx redis-server\n",
    "if [ -z \"$HOME\" ]; then\n  echo \"no home\" >&2\n  exit 1\nfi\n",
    "export PATH=\"$HOME/.local/bin:$PATH\"\ncd /srv/app && git pull\n",
    "cat access.log | grep ' 500 ' | awk '{print $7}' | sort | uniq -c | sort -rn | head\n",
    "echo hello world\n",
    "python -m venv .venv\n.venv/bin/pip install -r requirements.txt\ngit status\n",
]
JSON = [
    "{\"name\": \"jobcast\", \"version\": \"1.0.0\", \"private\": true}\n",
    "[\n  {\"id\": 1, \"tags\": [\"a\", \"b\"]},\n  {\"id\": 2, \"tags\": []}\n]\n",
    "{\n  \"compilerOptions\": {\n    \"target\": \"es2020\",\n    \"strict\": true\n  },\n"
    "  \"include\": [\"src\"]\n}\n",
    "{\"html\": \"<b>bold</b>\", \"code\": \"def f(): pass\", \"n\": null}\n",
]
C = [
    "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
    "static size_t count_lines(const char *s) {\n    size_t n = 0;\n"
    "    while (*s) { if (*s++ == '\\n') n++; }\n    return n;\n}\n",
    "typedef struct node {\n    int value;\n    struct node *next;\n} node_t;\n\n"
    "node_t *push(node_t *head, int v) {\n    node_t *n = malloc(sizeof *n);\n"
    "    n->value = v;\n    n->next = head;\n    return n;\n}\n",
    "#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
]
GO = [
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello\")\n}\n",
    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {\n"
    "\tif err := s.db.Ping(); err != nil {\n\t\thttp.Error(w, err.Error(), 500)\n\t\treturn\n\t}\n}\n",
    "ch := make(chan int)\ngo func() {\n\tdefer close(ch)\n\tfor i := 0; i < 3; i++ {\n"
    "\t\tch <- i\n\t}\n}()\n",
    "for _, v := range items {\n\ttotal += v\n}\n",
    "type Job struct {\n\tID    string `json:\"id\"`\n\tState string `json:\"state\"`\n}\n\n"
    "func NewJob(id string) *Job {\n\treturn &Job{ID: id, State: \"queued\"}\n}\n",
]

CASES = [(lang, text) for lang, texts in (
    ("python", PYTHON), ("javascript", JAVASCRIPT), ("sql", SQL), ("html", HTML),
    ("bash", SHELL), ("json", JSON), ("c", C), ("go", GO)) for text in texts]


@pytest.mark.parametrize("expected,source", CASES,
                         ids=[f"{lang}-{n}" for n, (lang, _) in enumerate(CASES)])
def test_detects_the_language(expected: str, source: str) -> None:
    assert detect_language(source) == expected


def test_the_worker_uses_it_for_auto() -> None:
    source = "import os\nprint('<b>hi</b>')\n"
    assert detect_lexer(source).name == "Python"
    html, lexer = render(source, "auto")
    assert lexer == "Python" and '<span class="kn">import</span>' in html


def test_guess_lexer_alone_gets_many_of_these_wrong() -> None:
    """Why worker/language.py exists (Pygments 2.21: XML for JSON holding HTML, etc.)."""
    wrong = [text for lang, text in CASES if lang not in guess_lexer(text).aliases]
    assert len(wrong) > len(CASES) // 2
    assert guess_lexer(JSON[3]).aliases[0] == "xml" and detect_language(JSON[3]) == "json"


def test_other_languages_still_fall_back_to_pygments() -> None:
    php = "<?php\n$name = $_GET['name'] ?? 'world';\necho \"Hello, $name\";\n"
    assert "php" in detect_language(php)  # Pygments: javascript+php
    assert detect_language("just some words, nothing else") == "text"
    assert detect_language("make sure you call me later\ncat videos are fun\n") == "text"
    assert render("Hello there.\n", "auto")[1] == "Text only"


def test_large_snippets_are_sampled() -> None:
    big = "SELECT id FROM t WHERE x = 1;\n" * 4000  # ~120 KB
    assert detect_language(big) == "sql"
