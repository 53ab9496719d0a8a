"""Export: self-contained HTML, ZIP, React (JSX) and Vue components.

The components are checked by the real tools when node is here (esbuild compiles the JSX,
react-dom/server renders it; @vue/compiler-sfc parses the SFC and compiles its template,
vue/server-renderer renders it): the rendered markup must show the page's text, its
elements (tag, class, id) in order, and its inline styles, with no React or Vue warning.
``packaging/node-tools.sh`` installs the tools into a cache folder (``./dev.sh test`` runs it);
without them those tests skip and say why, and the Python-side checks still run.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from web2code.app.cli import main
from web2code.app.export import (
    ExportError,
    _split_declarations,
    component_name,
    export_page,
    to_react,
    to_self_contained,
    to_vue,
    to_zip,
    visible_text,
)
from web2code.app.htmldom import VOID_ELEMENTS, Element, parse

NODE_TOOLS = Path(os.environ.get("WEB2CODE_NODE_TOOLS")
                  or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "web2code" / "node-tools")
NODE_PACKAGES = ("esbuild", "react", "react-dom", "vue", "@vue/compiler-sfc", "@vue/server-renderer")

RENDER_JS = r"""
const { createRequire } = require('module');
const path = require('path');
const req = createRequire(path.join(process.argv[2], 'package.json'));
const esbuild = req('esbuild'), React = req('react'), server = req('react-dom/server');
const sfc = req('@vue/compiler-sfc'), vue = req('vue'), vueServer = req('@vue/server-renderer');
const jobs = JSON.parse(require('fs').readFileSync(process.argv[3], 'utf8'));
(async () => {
  const results = [];
  for (const job of jobs) {
    const warnings = [];
    const origError = console.error, origWarn = console.warn;
    console.error = console.warn = (...a) => warnings.push(a.map(String).join(' '));
    try {
      if (job.kind === 'react') {
        const out = esbuild.transformSync(job.code,
          { loader: 'jsx', format: 'cjs', jsx: 'automatic', logLevel: 'silent' });
        const mod = { exports: {} };
        new Function('module', 'exports', 'require', out.code)(mod, mod.exports, req);
        const html = server.renderToStaticMarkup(React.createElement(mod.exports.default));
        results.push({ ok: true, html, warnings, name: mod.exports.default.name });
      } else {
        const { descriptor, errors } = sfc.parse(job.code, { filename: job.name + '.vue' });
        if (errors.length) throw new Error('sfc: ' + errors.map(e => e.message || String(e)).join('; '));
        const t = sfc.compileTemplate({ source: descriptor.template.content, filename: job.name + '.vue', id: 'x' });
        if (t.errors.length) throw new Error('template: ' + t.errors.map(e => e.message || String(e)).join('; '));
        const script = sfc.compileScript(descriptor, { id: 'x' });
        const app = vue.createSSRApp({ template: descriptor.template.content });
        app.config.warnHandler = (msg) => warnings.push(msg);
        const html = await vueServer.renderToString(app);
        results.push({ ok: true, html, warnings, css: descriptor.styles.map(s => s.content).join('\n'),
                       script: script.content });
      }
    } catch (e) {
      results.push({ ok: false, error: String((e && e.message) || e), warnings });
    } finally {
      console.error = origError; console.warn = origWarn;
    }
  }
  process.stdout.write(JSON.stringify(results));
})();
"""


def _node_missing() -> str:
    if shutil.which("node") is None:
        return "node is not installed: the JSX and Vue output is checked on the Python side only"
    missing = [p for p in NODE_PACKAGES if not (NODE_TOOLS / "node_modules" / p / "package.json").is_file()]
    if missing:
        return (f"{', '.join(missing)} not in {NODE_TOOLS}: run packaging/node-tools.sh "
                "(./dev.sh test does) to check the JSX and Vue output with the real tools")
    return ""


def render_with_node(jobs: list[dict[str, str]], tmp: Path) -> list[dict[str, Any]]:
    script = tmp / "render.cjs"
    script.write_text(RENDER_JS)
    (tmp / "jobs.json").write_text(json.dumps(jobs))  # a file: reading a pipe on stdin can fail with EAGAIN
    r = subprocess.run(["node", str(script), str(NODE_TOOLS), str(tmp / "jobs.json")], capture_output=True,
                       text=True, timeout=180, check=False, env={**os.environ, "NODE_ENV": "development"})
    assert r.returncode == 0, r.stderr[-2000:]
    results: list[dict[str, Any]] = json.loads(r.stdout)
    return results


# ---------------------------------------------------------------- pages
NASTY = [
    # attributes with quotes, style with url() holding ';' and quotes, custom properties, vendor prefixes
    """<!DOCTYPE html><html><head><title>Q &amp; A</title><meta charset="utf-8">
<style>body { font: 14px "A`b"; } .x::before { content: "\\201C ${x}"; }</style></head>
<body class="b" onload="init()"><DIV CLASS="hero" ID=top title='say "hi"' data-x="it's"
 style="background: url('data:image/png;base64,AAA;x') no-repeat; --my-var: 3px; -webkit-transition: all 1s;
 -ms-transform: none; color: red !important" onclick="alert('x')">
<H1>Hello {name} &lt;b&gt; &amp; world &copy; 2024</H1>
<P>one <b>bold</b> two<P>para &nbsp;two {{ mustache }} `tick` ${x}
<UL><LI>a<LI>b <a href="javascript:alert(1)" onmouseover="x">link</a><li>c</UL></DIV></body></html>""",
    # forms, void elements, booleans, label for, tabindex, select and textarea defaults
    """<form action="/go"><label for=q>Query</label><input id=q name=q value="v" disabled checked tabindex=2
maxlength="3" readonly><br><input type=checkbox checked><textarea rows=2>
first line
second</textarea><select name=s><option>a<option selected value="b">B<option>c</select>
<button type=submit class="btn primary" autofocus>Go &rarr;</button><hr></form>""",
    # SVG: viewBox, stroke-width, linearGradient, xlink:href, self-closing children
    """<div class=icon><svg viewBox="0 0 24 24" width="24" height="24" xmlns="http://www.w3.org/2000/svg">
<defs><linearGradient id="g" gradientUnits="userSpaceOnUse"><stop offset="0" stop-color="#fff"/></linearGradient>
</defs><path d="M0 0L24 24" stroke-width="2" stroke-linecap="round" fill-opacity=".5"/>
<use xlink:href="#g"/><text x="1" y="2" font-size="3">SVG text</text></svg> Caption</div>""",
    # tables without tbody, unclosed cells, pre with significant whitespace, comments, scripts
    """<section><h2>Table</h2><table class=t><tr><th>Name<th>Value<tr><td>a<td>1<tr><td>b<td>2</table>
<!-- a comment --><pre class=code>
  indented {
    code &lt;here&gt;
  }</pre><script>document.write("x")</script><noscript>no js</noscript>
<p>inline <em>em</em><strong>strong</strong> <code>x &lt; y</code> end</p></section>""",
    # a fragment without html/body, uppercase tags, entities in attributes, iframes and images
    """<IMG SRC="a.png" ALT="A &quot;quoted&quot; alt"><NAV><A HREF="#x" TARGET=_blank>Home</A> |
<A HREF="/about">About us</A></NAV><figure><img src=b.png srcset="b.png 1x, b2.png 2x"><figcaption>Fig. 1
</figcaption></figure><div contenteditable="true" spellcheck="false" style="">editable</div>""",
]

_WORDS = ["alpha", "beta", "Gamma", "déjà", "naïve", "x<y", "a&b", "{brace}", "}close", "{{ tpl }}",
          "`tick`", "${js}", '"dq"', "'sq'", "&amp;", "&nbsp;", "&copy;", "&#x41;", "&lt;tag&gt;", "100%",
          "back\\slash", "→"]


def _words(rng: random.Random) -> str:
    out: list[str] = []
    for _ in range(rng.randint(1, 4)):
        w = rng.choice(_WORDS)
        w = w.replace("<", "&lt;").replace(">", "&gt;") if "&" not in w else w
        if w.startswith("a&b"):
            w = "a&amp;b"
        out.append(w)
    return " ".join(out)


def _style(rng: random.Random) -> str:
    decls = rng.sample(["color: #123", "background: url(\"img;1.png\") center", "--gap: 4px",
                        "margin: 0 auto", "-webkit-box-shadow: 0 0 1px red", "font-family: 'A B', serif",
                        "grid-template-columns: repeat(2, 1fr)", "z-index: 3"], rng.randint(1, 3))
    return "; ".join(decls)


def _attrs(rng: random.Random) -> str:
    parts: list[str] = []
    if rng.random() < 0.6:
        parts.append(f'class="{rng.choice(["card", "row col", "a-b_c", "x"])}"')
    if rng.random() < 0.3:
        parts.append(f"style='{_style(rng)}'")
    if rng.random() < 0.2:
        parts.append('title="it\'s &quot;ok&quot;"')
    if rng.random() < 0.2:
        parts.append('onclick="go()"')
    if rng.random() < 0.2:
        parts.append(f'data-n="{rng.randint(0, 9)}"')
    return "".join(" " + p for p in parts)


def _tag(rng: random.Random, name: str) -> str:
    return name.upper() if rng.random() < 0.2 else name


def _block(rng: random.Random, depth: int) -> str:
    kind = rng.choice(["div", "p", "ul", "table", "h2", "section", "pre", "svg"] if depth < 3 else ["p", "h2"])
    if kind in ("div", "section"):
        t = _tag(rng, kind)
        inner = "\n".join(_block(rng, depth + 1) for _ in range(rng.randint(1, 3)))
        return f"<{t}{_attrs(rng)}>\n{inner}\n</{t}>"
    if kind == "p":
        close = "</p>" if rng.random() < 0.5 else ""  # an unclosed <p>: the next block closes it
        return f"<{_tag(rng, 'p')}{_attrs(rng)}>{_inline(rng)}{close}"
    if kind == "ul":
        items = "".join(f"<li>{_inline(rng)}" + ("</li>" if rng.random() < 0.5 else "") for _ in range(3))
        return f"<ul{_attrs(rng)}>{items}</ul>"
    if kind == "table":
        rows = "".join("<tr>" + "".join(f"<td>{_words(rng)}" for _ in range(2)) for _ in range(2))
        return f"<table{_attrs(rng)}>{rows}</table>"
    if kind == "pre":
        return f"<pre>\n  {_words(rng)}\n    {_words(rng)}</pre>"
    if kind == "svg":
        return ('<svg viewBox="0 0 10 10" width="10"><circle cx="5" cy="5" r="4" stroke-width="2" '
                'fill-opacity="0.5"/><text x="1" y="9">' + _words(rng) + "</text></svg>")
    return f"<{_tag(rng, kind)}{_attrs(rng)}>{_inline(rng)}</{kind}>"


def _inline(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.45:
            parts.append(_words(rng))
        elif r < 0.65:
            t = rng.choice(["b", "em", "span", "code"])
            parts.append(f"<{_tag(rng, t)}{_attrs(rng)}>{_words(rng)}</{t}>")
        elif r < 0.75:
            parts.append('<a href="javascript:void(0)">' + _words(rng) + "</a>")
        elif r < 0.85:
            parts.append(rng.choice(["<br>", "<img src=x.png alt=x>", "<input value='v' disabled>"]))
        else:
            parts.append(" ")
    return rng.choice([" ", "", "\n  "]).join(parts)


def generated_pages(n: int = 24, seed: int = 18) -> list[str]:
    rng = random.Random(seed)
    pages = []
    for _ in range(n):
        body = "\n".join(_block(rng, 0) for _ in range(rng.randint(1, 4)))
        css = "<style>.card { color: red; } /* ` ${x} */</style>" if rng.random() < 0.5 else ""
        if rng.random() < 0.5:
            pages.append(f"<!DOCTYPE html>\n<html><head><title>t</title>{css}</head>\n<body>\n{body}\n</body></html>\n")
        else:
            pages.append(css + body)
    return pages


PAGES = NASTY + generated_pages()


# ---------------------------------------------------------------- what the renders must keep
_DROPPED = {"script", "style", "title", "meta", "link", "base", "noscript", "head"}


def _elements(source: str) -> list[tuple[str, str, str]]:
    """(tag, class, id) of the body's elements in order, what a component drops left out."""
    doc = parse(source)
    out: list[tuple[str, str, str]] = []

    def walk(el: Element) -> None:
        if el.tag in _DROPPED:
            return
        out.append((el.real_tag.lower(), el.attr("class") or "", el.attr("id") or ""))
        for c in el.elements:
            walk(c)

    for el in doc.body_children():
        walk(el)
    return out


def _styles(source: str) -> list[dict[str, str]]:
    doc = parse(source)
    out = []
    for top in doc.body_children():
        for el in top.iter():
            decls = _split_declarations(el.attr("style") or "")
            if decls:  # an empty style is no style (React writes none)
                out.append({k.lower(): re.sub(r"\s*!important$", "", v).replace(" ", "").replace('"', "'")
                            for k, v in decls})
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    reason = _node_missing()
    if reason:
        pytest.skip(reason)
    jobs = []
    for i, page in enumerate(PAGES):
        jobs.append({"kind": "react", "code": to_react(page, f"Page{i}")[0], "name": f"Page{i}"})
        jobs.append({"kind": "vue", "code": to_vue(page, f"Page{i}")[0], "name": f"Page{i}"})
    return render_with_node(jobs, tmp_path_factory.mktemp("node"))


@pytest.mark.parametrize("index", range(len(PAGES)))
def test_react_component_compiles_and_renders_the_pages_text_and_elements(index: int,
                                                                          rendered: list[dict[str, Any]]) -> None:
    page = PAGES[index]
    r = rendered[2 * index]
    assert r["ok"], r.get("error")
    assert r["warnings"] == []
    assert r["name"] == f"Page{index}"
    assert visible_text(r["html"]) == visible_text(page)
    assert _elements(r["html"]) == _elements(page)
    assert _styles(r["html"]) == _styles(page)


@pytest.mark.parametrize("index", range(len(PAGES)))
def test_vue_component_compiles_and_renders_the_pages_text_and_elements(index: int,
                                                                        rendered: list[dict[str, Any]]) -> None:
    page = PAGES[index]
    r = rendered[2 * index + 1]
    assert r["ok"], r.get("error")
    assert r["warnings"] == []
    assert visible_text(r["html"]) == visible_text(page)
    assert _elements(r["html"]) == _elements(page)
    assert f'name: "Page{index}"' in r["script"]
    css = "\n".join(el.text() for el in parse(page).root.iter() if el.tag == "style")
    assert r["css"].strip() == css.strip()


# ---------------------------------------------------------------- Python-side checks (always run)
def _jsx_tags(jsx: str) -> list[tuple[str, str, list[str]]]:
    """A JSX-aware scan of the component's markup: (kind, name, attribute names) per tag, with
    ``{...}`` expressions (and the strings in them) skipped."""
    body = jsx[jsx.index("return (") + len("return ("):jsx.rindex(");")]
    out: list[tuple[str, str, list[str]]] = []
    i = 0

    def skip_expr(i: int) -> int:
        depth, quote = 0, ""
        while True:
            ch = body[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'`":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1

    while i < len(body):
        ch = body[i]
        if ch == "{":
            i = skip_expr(i)
        elif ch == "<":
            closing = body[i + 1] == "/"
            m = re.compile(r"</?([A-Za-z][\w.-]*)?").match(body, i)
            assert m is not None
            name = m.group(1) or ""
            i = m.end()
            attrs: list[str] = []
            while True:
                while body[i].isspace():
                    i += 1
                if body.startswith("/>", i):
                    out.append(("self", name, attrs))
                    i += 2
                    break
                if body[i] == ">":
                    out.append(("close" if closing else "open", name, attrs))
                    i += 1
                    break
                am = re.compile(r"[A-Za-z_][\w:-]*").match(body, i)
                assert am is not None, body[i:i + 40]
                attrs.append(am.group(0))
                i = am.end()
                if body[i] == "=":
                    i += 1
                    if body[i] == "{":
                        i = skip_expr(i)
                    else:
                        assert body[i] == '"', body[i:i + 40]
                        i = body.index('"', i + 1) + 1
        else:
            assert ch not in "}>", f"unescaped {ch!r} in JSX text: {body[max(0, i - 30):i + 30]}"
            i += 1
    return out


@pytest.mark.parametrize("index", range(len(PAGES)))
def test_jsx_is_balanced_and_uses_react_attribute_names(index: int) -> None:
    jsx, _ = to_react(PAGES[index], "P")
    stack: list[str] = []
    for kind, name, attrs in _jsx_tags(jsx):
        if kind == "open":
            stack.append(name)
        elif kind == "close":
            assert stack and stack.pop() == name
        if kind != "close":
            assert name.lower() not in VOID_ELEMENTS or kind == "self", name
        for a in attrs:
            assert a not in ("class", "for", "tabindex", "readonly", "maxlength", "viewbox", "stroke-width",
                             "srcset", "xlink:href", "contenteditable"), a
            assert not a.startswith("on"), a
            assert "-" not in a or a.startswith(("data-", "aria-")), a
    assert stack == []


@pytest.mark.parametrize("index", range(len(PAGES)))
def test_vue_template_keeps_the_text_and_drops_events_and_scripts(index: int) -> None:
    vue, _ = to_vue(PAGES[index], "P")
    template = vue[vue.index("<template>") + len("<template>"):vue.rindex("</template>")]
    assert visible_text(template.replace("&#123;&#123;", "{{")) == visible_text(PAGES[index])
    doc = parse(template)
    for el in doc.root.iter():
        assert el.tag != "script"
        assert not any(k.startswith("on") for k, _ in el.attrs)
        assert not any((v or "").strip().lower().startswith("javascript:") for _, v in el.attrs)
    assert "{{" not in re.sub(r"<[^>]*>", "", template)  # no text Vue would read as an interpolation


def test_react_conversion_details() -> None:
    jsx, notes = to_react(NASTY[0] + NASTY[2], "Nasty")
    jsx = jsx[jsx.index("const css"):]  # the code, not the notes in the header
    assert 'className="hero"' in jsx and "class=" not in jsx
    assert '"--my-var": "3px"' in jsx and "WebkitTransition" in jsx and "msTransform" in jsx
    assert "background: \"url('data:image/png;base64,AAA;x') no-repeat\"" in jsx
    assert 'color: "red"' in jsx
    assert 'viewBox="0 0 24 24"' in jsx and 'strokeWidth="2"' in jsx and "<linearGradient" in jsx
    assert 'xlinkHref="#g"' in jsx and 'gradientUnits="userSpaceOnUse"' in jsx
    assert "onclick" not in jsx.lower() and "javascript:" not in jsx
    assert "Hello &#123;name&#125; &lt;b&gt; &amp; world" in jsx
    assert "const css = `body { font: 14px \"A\\`b\"; } .x::before { content: \"\\\\201C \\${x}\"; }`" in jsx
    assert any("script" in n or "event attribute" in n for n in notes)
    assert any("'Q & A'" in n for n in notes)
    assert any("javascript: URL" in n for n in notes)
    assert any("!important" in n for n in notes)
    form, _ = to_react(NASTY[1], "Form")
    assert "htmlFor=\"q\"" in form and 'tabIndex="2"' in form and "readOnly" in form and 'maxLength="3"' in form
    assert 'defaultValue="v"' in form and "defaultChecked" in form and "<br />" in form and "<hr />" in form
    assert '<select name="s" defaultValue={"b"}>' in form
    assert 'defaultValue={"first line\\nsecond"}' in form


def test_component_names_are_pascal_case_identifiers() -> None:
    assert component_name("landing page") == "LandingPage"
    assert component_name("my-page_2") == "MyPage2"
    assert component_name("2024 report") == "Page2024Report"
    assert component_name("---") == "Page"
    assert component_name("déjà vu") == "DJVu"


# ---------------------------------------------------------------- HTML and ZIP
def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "img").mkdir(parents=True)
    (root / "img" / "logo.png").write_bytes(_png((255, 0, 0)))
    (root / "img" / "bg one.png").write_bytes(_png((0, 255, 0)))
    (root / "css").mkdir()
    (root / "css" / "site.css").write_text(".hero { background: url('../img/bg%20one.png'); }\n")
    (root / "app.js").write_text("console.log('</script>');\n")
    (tmp_path / "secret.png").write_bytes(_png((1, 2, 3)))
    (root / "img" / "link.png").symlink_to(tmp_path / "secret.png")
    page = root / "index.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="css/site.css">'
        '<link rel=icon href="img/logo.png"><script src="app.js"></script>'
        '<style>.a { background-image: url(img/logo.png) } .b { background: url("https://cdn.example/x.png") }</style>'
        "</head><body>\n<!-- kept comment -->\n<p>Text   kept   as is</p>\n"
        '<img src="img/logo.png" alt=logo><img src="../secret.png"><img src="img/link.png">'
        '<img src="https://cdn.example/remote.png"><img src="missing.png">'
        '<div style="background: url(img/logo.png)">x</div><a href="other.html">link</a>\n</body></html>\n')
    return page


def _data(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def test_self_contained_html_inlines_local_assets_only(site: Path) -> None:
    source = site.read_text()
    out, notes = to_self_contained(source, site.parent)
    logo = _png((255, 0, 0))
    uris = re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", out)
    assert uris and all(_data(u) in (logo, _png((0, 255, 0))) for u in uris)
    assert out.count(base64.b64encode(logo).decode()) == 4  # icon, <style> url(), <img>, style attribute
    assert base64.b64encode(_png((0, 255, 0))).decode() in out  # via the stylesheet, relative to the CSS file
    assert base64.b64encode(_png((1, 2, 3))).decode() not in out  # outside the folder, even through a symlink
    assert '<img src="../secret.png">' in out and '<img src="img/link.png">' in out
    assert "https://cdn.example/remote.png" in out and "https://cdn.example/x.png" in out
    assert "<script>console.log('<\\/script>');\n</script>" in out
    assert '<link rel="stylesheet"' not in out and 'href="other.html"' in out
    assert "<!-- kept comment -->\n<p>Text   kept   as is</p>" in out  # the rest is left as written
    joined = "\n".join(notes)
    assert "2 remote URL(s)" in joined and "outside the page's folder" in joined and "missing.png" in joined
    assert visible_text(out) == visible_text(source)


def test_zip_has_index_and_hashed_assets_and_is_deterministic(site: Path) -> None:
    data, notes = to_zip(site.read_text(), site.parent)
    again, _ = to_zip(site.read_text(), site.parent)
    assert data == again
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    assert names[0] == "index.html"
    index = zf.read("index.html").decode()
    assert "data:" not in index
    logo = _png((255, 0, 0))
    logo_name = f"assets/{hashlib.sha256(logo).hexdigest()[:16]}.png"
    assert zf.read(logo_name) == logo
    assert f'<img src="{logo_name}" alt="logo">' in index
    assert f'url("{logo_name}")' in index
    for ref in re.findall(r'(?:src|href)="(assets/[^"]+)"|url\("(assets/[^"]+)"\)', index):
        assert (ref[0] or ref[1]) in names
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    assert any("asset file(s)" in n for n in notes)


# ---------------------------------------------------------------- CLI
def test_cli_export_writes_each_format(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for fmt, name in (("react", "Index.jsx"), ("vue", "Index.vue"), ("zip", "index.zip"),
                      ("html", "index.inline.html")):
        assert main(["export", str(site), "--to", fmt]) == 0
        out = capsys.readouterr()
        assert out.out.strip() == str(site.parent / name)
        assert (site.parent / name).stat().st_size > 100
    assert main(["export", str(site), "--to", "react", "-o", "-"]) == 0
    out = capsys.readouterr()
    assert "export default function Index()" in out.out and "note:" in out.err


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}", "--to", "react"], "no such file"),
    (["{dir}", "--to", "vue"], "is a folder"),
    (["{binary}", "--to", "html"], "not an HTML file"),
    (["{empty}", "--to", "html"], "is empty"),
    (["{page}", "--to", "zip", "-o", "-"], "ZIP cannot go to the terminal"),
    (["{page}", "--to", "html", "-o", "{page}"], "is the page itself"),
])
def test_cli_export_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "p.html"
    page.write_text("<p>x</p>")
    (tmp_path / "bin.html").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / "empty.html").write_text("  \n")
    subst = {"{missing}": str(tmp_path / "nope.html"), "{dir}": str(tmp_path), "{page}": str(page),
             "{binary}": str(tmp_path / "bin.html"), "{empty}": str(tmp_path / "empty.html")}
    before = sorted(tmp_path.iterdir())
    assert main(["export", *[subst.get(a, a) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before  # nothing written, no temporary file left


def test_export_page_rejects_an_unknown_format(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("<p>x</p>")
    with pytest.raises(ExportError, match="unknown export format"):
        export_page(page, "svelte")
