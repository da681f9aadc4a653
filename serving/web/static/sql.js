// SQL syntax highlighting: a small tokenizer that wraps keywords, functions, strings, numbers and
// comments in spans (text nodes only), for a <pre class="sql">.
import { h } from "./dom.js";

const KEYWORDS = new Set(`select from where group by order having limit offset join left right full inner outer
cross on as and or not in is null like between case when then else end distinct union all intersect except
with recursive asc desc over partition rows range exists cast true false top`.split(/\s+/));
const TOKEN = /(--[^\n]*|\/\*[\s\S]*?\*\/)|('(?:[^']|'')*'?)|("(?:[^"]|"")*"?|\[[^\]]*\]?|`[^`]*`?)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_$]*)|(\s+|.)/g;

export function highlight(sql) {
  const pre = h("pre", { class: "sql" });
  const code = h("code");
  pre.append(code);
  let m;
  TOKEN.lastIndex = 0;
  while ((m = TOKEN.exec(sql)) !== null) {
    const [text, comment, str, quoted, num, word] = m;
    let cls = null;
    if (comment) cls = "com";
    else if (str) cls = "str";
    else if (num) cls = "num";
    else if (word && KEYWORDS.has(word.toLowerCase())) cls = "kw";
    else if (word && sql[TOKEN.lastIndex] === "(") cls = "fn";
    else if (quoted) cls = null;
    code.append(cls ? h("span", { class: cls }, text) : document.createTextNode(text));
  }
  return pre;
}
