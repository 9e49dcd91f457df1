-- set_highlighted.lua: store a snippet's highlighted HTML, unless the snippet expired.
--
-- KEYS[1]  the snippet's hash (shared.keys.snippet_key)
-- ARGV[1]  the highlighted HTML
-- ARGV[2]  now, epoch seconds as text
-- ARGV[3]  the name of the Pygments lexer used
--
-- Returns 1 when stored, 0 when the snippet is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'highlighted_html', ARGV[1], 'highlighted_at', ARGV[2],
           'lexer', ARGV[3])
return 1
