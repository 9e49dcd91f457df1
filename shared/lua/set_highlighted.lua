-- set_highlighted.lua: store a snippet's highlighted HTML, unless the snippet expired.
--
-- KEYS[1]  the snippet's hash (shared.kinds.highlight.snippets.snippet_key)
-- ARGV[1]  one JSON object, the fields below (shared.kinds.highlight.snippets.SnippetStore.set_highlighted):
--   a.html    the highlighted HTML
--   a.now     now, epoch seconds as text
--   a.lexer   the name of the Pygments lexer used
--
-- Returns 1 when stored, 0 when the snippet is gone.
local a = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'highlighted_html', a.html, 'highlighted_at', a.now,
           'lexer', a.lexer)
return 1
