"""Web pages made up from a seed, and controlled changes to them, for the fidelity tests and benchmark.

Each page is a list of sections (header, hero, features, pricing, testimonial,
call to action, footer) with its own words and colours. The changes are the ones
the scorer must rank: one block's text, one background colour (small); a section
removed, sections reordered, every colour changed (large); another seed (another page).
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field, replace

WORDS = (
    "acme", "nimbus", "orbit", "harbor", "summit", "vector", "cedar", "quartz", "falcon", "meadow", "lumen",
    "atlas", "pixel", "forge", "crest", "delta", "ember", "grove", "haven", "kinetic", "lattice", "mosaic",
    "nova", "prism", "quill", "ridge", "spruce", "tidal", "umbra", "vivid", "willow", "zenith", "bright",
    "secure", "simple", "rapid", "global", "modern", "trusted", "private", "smart", "clear", "open", "bold",
)
VERBS = (
    "build", "ship", "scale", "launch", "design", "track", "manage", "share", "deploy", "plan", "measure",
    "connect", "automate",
)
NOUNS = (
    "teams", "projects", "invoices", "reports", "widgets", "pages", "servers", "customers", "orders", "ideas",
    "tasks", "apps",
)


@dataclass
class Section:
    kind: str
    bg: str
    fg: str
    texts: list[str]
    accent: str = "#2563eb"


@dataclass
class Site:
    seed: int
    font: str
    sections: list[Section] = field(default_factory=list)

    def html(self) -> str:
        body = "\n".join(_render(s) for s in self.sections)
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.sections[0].texts[0])}"
                f"</title><style>body{{margin:0;font-family:{self.font};}} section,header,footer{{padding:36px 48px}}"
                " h1{font-size:40px;margin:0 0 12px} h2{font-size:28px;margin:0 0 16px} p{font-size:17px;margin:6px 0}"
                " .row{display:flex;gap:24px} .card{flex:1;border:1px solid #cbd5e1;border-radius:8px;padding:16px}"
                " .btn{display:inline-block;padding:10px 22px;border-radius:6px;color:#fff;font-size:17px}"
                " nav a{margin-left:22px;text-decoration:none;font-size:17px}"
                f"</style></head><body>\n{body}\n</body></html>")


SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "za", "be", "do", "fe", "gu", "ha", "ji", "po",
             "qua", "ri", "shi", "tra", "um", "ven", "wo", "xi", "yo", "zen", "bri", "cla", "dro", "fle")


def _word(rng: random.Random) -> str:
    """A made-up word: every site has its own vocabulary, as real pages do."""
    if rng.random() < 0.3:
        return rng.choice(WORDS + VERBS + NOUNS)
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def _phrase(rng: random.Random, n: int) -> str:
    return " ".join(_word(rng) for _ in range(n)).capitalize()


def _sentence(rng: random.Random) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(7, 12))).capitalize() + "."


def _colour(rng: random.Random, light: bool) -> str:
    lo, hi = (200, 255) if light else (10, 90)
    return "#" + "".join(f"{rng.randint(lo, hi):02x}" for _ in range(3))


def make_site(seed: int) -> Site:
    rng = random.Random(seed)
    font = rng.choice(("Arial, sans-serif", "Georgia, serif", "Verdana, sans-serif", "DejaVu Sans, sans-serif"))
    accent = "#" + "".join(f"{rng.randint(20, 200):02x}" for _ in range(3))
    sections = [Section("header", _colour(rng, False), "#ffffff",
                        [_phrase(rng, 2)] + [_word(rng).capitalize() for _ in range(4)], accent)]
    kinds = ["hero", "features", "pricing", "testimonial", "cta"]
    rng.shuffle(kinds)
    for kind in kinds:
        light = rng.random() < 0.75
        bg, fg = (_colour(rng, True), "#111827") if light else (_colour(rng, False), "#f9fafb")
        n = {"hero": 3, "features": 7, "pricing": 7, "testimonial": 2, "cta": 2}[kind]
        texts = [_phrase(rng, rng.randint(2, 4)) if i % 2 == 0 else _sentence(rng) for i in range(n)]
        if kind == "pricing":
            texts = [_phrase(rng, 2)] + [x for i in range(3) for x in
                                         (_word(rng).capitalize(), f"${rng.randint(5, 99)} {_phrase(rng, 2)}")]
        sections.append(Section(kind, bg, fg, texts, accent))
    sections.append(Section("footer", "#111827", "#9ca3af",
                            [f"{_phrase(rng, 3)} {rng.randint(1990, 2030)}", _sentence(rng)], accent))
    return Site(seed, font, sections)


def _render(s: Section) -> str:
    e = html.escape
    t = s.texts
    style = f"background:{s.bg};color:{s.fg}"
    if s.kind == "header":
        links = "".join(f"<a href='#' style='color:{s.fg}'>{e(x)}</a>" for x in t[1:])
        return (f"<header style='{style};display:flex;justify-content:space-between;align-items:center'>"
                f"<strong style='font-size:22px'>{e(t[0])}</strong><nav>{links}</nav></header>")
    if s.kind == "hero":
        return (f"<section style='{style}'><h1>{e(t[0])}</h1><p>{e(t[1])}</p>"
                f"<p><span class='btn' style='background:{s.accent}'>{e(t[2])}</span></p></section>")
    if s.kind in ("features", "pricing"):
        cards = "".join(f"<div class='card'><h3>{e(t[i])}</h3><p>{e(t[i + 1])}</p></div>"
                        for i in range(1, len(t) - 1, 2))
        return f"<section style='{style}'><h2>{e(t[0])}</h2><div class='row'>{cards}</div></section>"
    if s.kind == "testimonial":
        return f"<section style='{style}'><p><em>{e(t[1])}</em></p><p><strong>{e(t[0])}</strong></p></section>"
    if s.kind == "cta":
        return (f"<section style='{style};text-align:center'><h2>{e(t[0])}</h2>"
                f"<span class='btn' style='background:{s.accent}'>{e(t[1][:24])}</span></section>")
    return f"<footer style='{style}'>" + "".join(f"<p>{e(x)}</p>" for x in t) + "</footer>"


# ---------------------------------------------------------------- changes
def _copy(site: Site) -> Site:
    return replace(site, sections=[replace(s, texts=list(s.texts)) for s in site.sections])


def change_text(site: Site, n_blocks: int = 1, seed: int = 0) -> Site:
    """Rewrite the text of ``n_blocks`` blocks (headings and sentences, in a fixed order)."""
    out = _copy(site)
    rng = random.Random(1000 + seed)
    slots = [(i, j) for i, s in enumerate(out.sections) for j in range(len(s.texts))]
    random.Random(seed).shuffle(slots)
    for i, j in slots[:n_blocks]:
        old = out.sections[i].texts[j]
        out.sections[i].texts[j] = " ".join(_word(rng).capitalize() for _ in old.split())
    return out


def change_background(site: Site, index: int | None = None) -> Site:
    """One section's background to a clearly different colour (same text colour)."""
    out = _copy(site)
    i = index if index is not None else max(range(1, len(out.sections) - 1), key=lambda k: len(out.sections[k].texts))
    s = out.sections[i]
    s.bg = "#fde047" if s.fg == "#111827" else "#7c2d12"
    return out


def remove_sections(site: Site, n: int = 1) -> Site:
    """Drop ``n`` content sections, the largest first."""
    out = _copy(site)
    for _ in range(n):
        inner = list(range(1, len(out.sections) - 1))
        if not inner:
            break
        out.sections.pop(max(inner, key=lambda k: len(out.sections[k].texts)))
    return out


def reorder(site: Site) -> Site:
    out = _copy(site)
    inner = out.sections[1:-1]
    out.sections = [out.sections[0], *reversed(inner), out.sections[-1]]
    return out


def recolour(site: Site) -> Site:
    """Every background and text colour changed (dark pages light, light pages dark)."""
    out = _copy(site)
    for s in out.sections:
        light_bg = s.fg != "#111827"
        s.bg, s.fg = ("#f1f5f9", "#7f1d1d") if light_bg else ("#1e1b4b", "#fef08a")
        s.accent = "#16a34a"
    return out
