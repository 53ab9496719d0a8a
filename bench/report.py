"""The Markdown report (and its per-phase plot) from a results JSON.

``python -m bench.report bench/results/<stem>.json`` rewrites the report of an earlier run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GiB = 2**30


def _g(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _med(d: Any, *keys: str) -> float | None:
    v = _g(d, *keys, "median")
    return float(v) if v is not None else None


def _fmt(v: float | None, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "—"
    return f"{v:.{digits}f}{unit}"


def _verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "**met**" if ok else "**missed**"


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's table: one row per figure, with the measured value, the anchor and the target."""
    rows: list[dict[str, Any]] = []
    rd, ip, cv, mem, gui = (r.get("rounds", {}), r.get("inproc", {}), r.get("convert", {}), r.get("memory", {}),
                            r.get("gui", {}))
    eng_tps = _med(rd, "engine", "tokens_per_s")
    lb0 = _med(rd, "llama_bench_tg_depth0")
    lbd = _med(rd, "llama_bench_tg_same_depth")
    ratio0 = _med(rd, "decode_ratio_depth0")
    ratiod = _med(rd, "decode_ratio_same_depth")
    depth = rd.get("prompt_depth")
    rows.append({"figure": f"decode tokens/s, web2code generate vs llama-bench tg{rd.get('tokens', '')} "
                           f"(depth 0), {r.get('meta', {}).get('threads')} threads; median of rounds",
                 "measured": f"{_fmt(eng_tps)} vs {_fmt(lb0)} tok/s", "ratio": _fmt(ratio0, '×', 3),
                 "target": "≥ 0.97×", "verdict": _verdict(ratio0, 0.97, True)})
    rows.append({"figure": f"… same, llama-bench at the engine's depth ({depth} positions, like-for-like)",
                 "measured": f"{_fmt(eng_tps)} vs {_fmt(lbd)} tok/s", "ratio": _fmt(ratiod, '×', 3),
                 "target": "≥ 0.97×", "verdict": _verdict(ratiod, 0.97, True)})
    e_best, d_best = _g(rd, "engine", "tokens_per_s", "max"), _g(rd, "llama_bench_tg_same_depth", "max")
    best = e_best / d_best if e_best and d_best else None
    rows.append({"figure": "… same depth, best round of each (robust to a shared machine's slowdowns)",
                 "measured": f"{_fmt(e_best)} vs {_fmt(d_best)} tok/s", "ratio": _fmt(best, '×', 3),
                 "target": "≥ 0.97×", "verdict": _verdict(best, 0.97, True)})
    e_ttft = _med(rd, "engine", "ttft_s")
    m_ttft = _med(rd, "mtmd_cli", "ttft_s")
    tr = _med(rd, "ttft_ratio")
    # Issue 6 asked for ≤ 1.05×; issue 16 keeps the prompt head from load and asks for ≤ 0.95×.
    rows.append({"figure": "cold time to first token (image encode + prefill; the text before the image kept from "
                           "load) vs llama-mtmd-cli; median of rounds",
                 "measured": f"{_fmt(e_ttft, ' s')} vs {_fmt(m_ttft, ' s')}", "ratio": _fmt(tr, '×', 3),
                 "target": "≤ 0.95×", "verdict": _verdict(tr, 0.95, False)})
    e_min, m_min = _g(rd, "engine", "ttft_s", "min"), _g(rd, "mtmd_cli", "ttft_s", "min")
    tb = e_min / m_min if e_min and m_min else None
    rows.append({"figure": "… best round of each",
                 "measured": f"{_fmt(e_min, ' s')} vs {_fmt(m_min, ' s')}", "ratio": _fmt(tb, '×', 3),
                 "target": "≤ 0.95×", "verdict": _verdict(tb, 0.95, False)})
    ru = ip.get("reuse", {})
    rr = _med(ru, "ratio")
    rows.append({"figure": "time to first token, regenerate for the same image (reuse) vs cold",
                 "measured": f"{_fmt(_med(ru, 'reuse_ttft_s'), ' s', 3)} vs {_fmt(_med(ru, 'cold_ttft_s'), ' s')}",
                 "ratio": _fmt(rr, '×', 4), "target": "≤ 0.10×", "verdict": _verdict(rr, 0.10, False)})
    va = ip.get("variants", {})
    vr = _med(va, "ratio_wall")
    rows.append({"figure": f"three variants together vs one ({va.get('tokens_per_variant', '?')} tokens each, "
                           "warm request, CPU)",
                 "measured": f"{_fmt(_med(va, 'three_wall_s'), ' s')} vs {_fmt(_med(va, 'one_wall_s'), ' s')}",
                 "ratio": _fmt(vr, '×', 3), "target": "≤ 1.6×", "verdict": _verdict(vr, 1.6, False)})
    rss = cv.get("peak_rss_bytes")
    rows.append({"figure": "converter peak RSS (7B checkpoint → Q4_K_M pair)" if r.get("meta", {}).get("size") == "7b"
                 else f"converter peak RSS ({r.get('meta', {}).get('size')} checkpoint → Q4_K_M pair)",
                 "measured": _fmt(rss / GiB if rss else None, " GiB"), "ratio": "",
                 "target": "≤ 3 GiB", "verdict": _verdict(rss / GiB if rss else None, 3.0, False)})
    cr = cv.get("ratio_vs_cp")
    rows.append({"figure": "converter wall time vs cp of the same input + output bytes",
                 "measured": f"{_fmt(cv.get('wall_s'), ' s', 0)} vs {_fmt(cv.get('cp_total_s'), ' s', 0)}",
                 "ratio": _fmt(cr, '×'), "target": "≤ 2×", "verdict": _verdict(cr, 2.0, False)})
    tot = mem.get("total_rss_bytes")
    budget = mem.get("budget_bytes")
    rows.append({"figure": "application + worker resident memory, Q4_K_M pair loaded",
                 "measured": f"{_fmt(tot / GiB if tot else None, ' GiB')} (files "
                             f"{_fmt(mem['files_bytes'] / GiB if mem.get('files_bytes') else None, ' GiB')})",
                 "ratio": _fmt(tot / budget if tot and budget else None, '× budget'),
                 "target": "≤ files + 1.5 GiB", "verdict": _verdict(tot / budget if tot and budget else None,
                                                                    1.0, False)})
    ws = _g(gui, "window_shown", "median_s")
    rows.append({"figure": "GUI: window shown after launch (no model load)", "measured": _fmt(ws, " s"),
                 "ratio": "", "target": "≤ 2 s", "verdict": _verdict(ws, 2.0, False)})
    st = gui.get("streaming_preview") or {}
    if st.get("status") == "measured":
        ups, stall = st.get("preview_updates_per_s"), st.get("max_stall_ms")
        ok = ups is not None and stall is not None and ups >= 5 and stall <= 50
        rows.append({"figure": "GUI: preview updates while streaming / longest event-loop stall",
                     "measured": f"{ups} /s / {stall} ms ({st.get('tokens_per_s')} tokens/s, "
                                 f"load {st.get('load_average_1m')})",
                     "ratio": "", "target": "≥ 5 /s / ≤ 50 ms", "verdict": "**met**" if ok else "**missed**"})
    else:
        rows.append({"figure": "GUI: preview updates while streaming / longest event-loop stall",
                     "measured": "—", "ratio": "", "target": "≥ 5 /s / ≤ 50 ms",
                     "verdict": f"not measured ({st.get('status', 'not run')})"})
    rp = r.get("replay") or {}
    sp = rp.get("total_speedup")
    rows.append({"figure": "speculative decoding (replay of bench/corpus) vs plain decode",
                 "measured": (f"{sp}× over {sum(p['tokens'] for p in rp.get('pages', []))} tokens, "
                              f"acceptance {rp.get('median_acceptance')}") if sp is not None else "—",
                 "ratio": _fmt(sp, "×"), "target": "≥ 1.5×",
                 "verdict": _verdict(sp, 1.5, True) if sp is not None else "not measured in this run"})
    osp = rp.get("ocr_total_speedup")
    if osp is not None:
        n = sum(p["tokens"] for p in rp.get("pages", []) if "ocr_tok_s" in p)
        rows.append({"figure": "… with drafts from the image's own text (OCR), whole pages (issue 16)",
                     "measured": f"{osp}× over {n} tokens", "ratio": _fmt(osp, "×"), "target": "≥ 1.8×",
                     "verdict": _verdict(osp, 1.8, True)})
    pr = rp.get("predicted_whole_corpus") or {}
    if pr.get("ocr_total_speedup") is not None:
        psp = pr["ocr_total_speedup"]
        rows.append({"figure": "… the same, predicted over every corpus page at this run's step costs",
                     "measured": f"{psp}× (n-gram alone {pr.get('total_speedup')}×)", "ratio": _fmt(psp, "×"),
                     "target": "≥ 1.8×", "verdict": _verdict(psp, 1.8, True)})
    return rows


def plot(r: dict[str, Any], png: Path) -> bool:
    """Stacked bars of load / image encode / prefill / decode for our engine and the llama.cpp anchor."""
    rd, ip = r.get("rounds", {}), r.get("inproc", {})
    if not rd.get("engine"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(rd.get("tokens") or 0)
    eng = {k: _med(rd, "engine", k) or 0.0 for k in ("load_s", "image_encode_s", "prefill_s", "decode_s")}
    bars: list[tuple[str, list[float]]] = [
        (f"web2code generate\n(cold, {n} tokens)", [eng["load_s"], eng["image_encode_s"], eng["prefill_s"],
                                                    eng["decode_s"]]),
    ]
    mt = rd.get("mtmd_cli")
    lbd = _med(rd, "llama_bench_tg_same_depth")
    if mt:
        dec = n / lbd if lbd else 0.0
        bars.append((f"llama.cpp: mtmd-cli +\nllama-bench tg{n} at depth", [
            _med(rd, "mtmd_cli", "load_s") or 0.0, _med(rd, "mtmd_cli", "image_encode_s") or 0.0,
            _med(rd, "mtmd_cli", "prompt_eval_s") or 0.0, dec]))
    reuse = _med(ip.get("reuse", {}), "reuse_ttft_s")
    if reuse is not None:
        bars.append((f"web2code regenerate\n(same image, {n} tokens)", [0.0, 0.0, reuse, eng["decode_s"]]))
    labels = ["load", "image encode", "prefill", "decode"]
    colors = ["#9e9e9e", "#ff9800", "#2196f3", "#4caf50"]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 1.1 * len(bars)))
    for i, (_name, vals) in enumerate(bars):
        left = 0.0
        for j, v in enumerate(vals):
            ax.barh(i, v, left=left, color=colors[j], label=labels[j] if i == 0 else None)
            if v > 0.04 * sum(vals):
                ax.text(left + v / 2, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white")
            left += v
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (medians)")
    meta = r.get("meta", {})
    ax.set_title(f"Per-phase time, {meta.get('size')} {meta.get('quant')}, {meta.get('threads')} threads, "
                 f"{_g(meta, 'machine', 'cpu', default='')}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def _gib(v: Any) -> str:
    return f"{v / GiB:.2f} GiB" if isinstance(v, (int, float)) and v else "—"


def markdown(r: dict[str, Any], png_name: str | None) -> str:
    meta = r.get("meta", {})
    mach = meta.get("machine", {})
    lines = [f"# Web2Code benchmark — {meta.get('size')} shapes, {meta.get('started', '')[:10]}", ""]
    lines += [f"Machine: {mach.get('cpu', '?')}, {mach.get('logical_cpus')} logical CPUs, "
              f"{_gib(mach.get('mem_total_bytes'))} RAM, SIMD {', '.join(mach.get('simd', []))}; "
              f"load average at start {mach.get('loadavg_start')} (shared machine: ratios are measured side by "
              "side in the same run, figures are medians).",
              f"Threads: {meta.get('threads')} for every program. Rounds: {meta.get('rounds')}. "
              f"Quantization: {meta.get('quant')}. Random weights at the real shapes (speed does not depend on "
              "the values).", "", f"Command: `{meta.get('command')}`", ""]
    lines += ["## The table (issue 6)", "", "| figure | measured | ratio | target | verdict |", "|---|---|---|---|---|"]
    for row in figures(r):
        lines.append(f"| {row['figure']} | {row['measured']} | {row['ratio']} | {row['target']} | {row['verdict']} |")
    lines += ["", "Side-by-side ratios are the median of the per-round ratios (each round runs both sides back to "
                  "back), so they need not equal the ratio of the two medians shown next to them.", ""]
    if png_name:
        lines += ["## Per-phase breakdown", "", f"![per-phase breakdown]({png_name})", ""]
    lines += _section_rounds(r) + _section_ceiling(r) + _section_batches(r) + _section_inproc(r) + _section_convert(r)
    lines += _section_memory(r) + _section_gui(r)
    lines += _section_replay(r)
    if r.get("errors"):
        lines += ["## Errors", ""] + [f"- `{k}`: {v}" for k, v in r["errors"].items()] + [""]
    if r.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    lines += ["## Phase wall times", "", ", ".join(f"{k} {v:.0f} s" for k, v in r.get("phase_wall_s", {}).items()),
              ""]
    return "\n".join(lines)


def _runs(d: Any) -> str:
    runs = _g(d, "runs", default=[])
    return ", ".join(f"{x:.3g}" for x in runs) if runs else "—"


def _section_rounds(r: dict[str, Any]) -> list[str]:
    rd = r.get("rounds")
    if not rd:
        return []
    out = ["## Decode and time to first token (side by side)", "",
           f"Image: a synthetic landing page, pre-padded to the model's square ({Path(rd['image']).name}); "
           f"prompt: the training template with the default instruction, {rd.get('prompt_depth')} positions. "
           f"1-minute load average at the start of each round: {rd.get('loadavg_1min')} "
           f"(the machine has {_g(r, 'meta', 'machine', 'logical_cpus')} logical CPUs).", "",
           "| quantity | median | runs |", "|---|---|---|"]
    for label, d in [
        ("engine load (s)", _g(rd, "engine", "load_s")),
        ("engine image encode (s)", _g(rd, "engine", "image_encode_s")),
        ("engine prefill (s)", _g(rd, "engine", "prefill_s")),
        ("engine time to first token (s)", _g(rd, "engine", "ttft_s")),
        ("engine decode, (n−1)/decode_s (tok/s)", _g(rd, "engine", "tokens_per_s")),
        ("engine decode as Stats reports it, n/decode_s (tok/s)", _g(rd, "engine", "reported_tokens_per_s")),
        ("engine process peak RSS (bytes)", _g(rd, "engine", "peak_rss_bytes")),
        ("llama-bench tg, depth 0 (tok/s)", rd.get("llama_bench_tg_depth0")),
        (f"llama-bench tg, depth {rd.get('prompt_depth')} (tok/s)", rd.get("llama_bench_tg_same_depth")),
        ("decode ratio vs depth 0", rd.get("decode_ratio_depth0")),
        ("decode ratio vs same depth", rd.get("decode_ratio_same_depth")),
        ("mtmd-cli start-up: load + warm-up (s)", _g(rd, "mtmd_cli", "load_s")),
        ("mtmd-cli text before the image (s)", _g(rd, "mtmd_cli", "text_before_image_s")),
        ("mtmd-cli image encode (s)", _g(rd, "mtmd_cli", "image_encode_s")),
        ("mtmd-cli image decode = image prefill (s)", _g(rd, "mtmd_cli", "image_decode_s")),
        ("mtmd-cli text after the image (s)", _g(rd, "mtmd_cli", "text_after_image_s")),
        ("mtmd-cli prefill = all but the encode (s)", _g(rd, "mtmd_cli", "prompt_eval_s")),
        ("mtmd-cli time to first token (s)", _g(rd, "mtmd_cli", "ttft_s")),
        ("time-to-first-token ratio", rd.get("ttft_ratio")),
    ]:
        if d:
            v = _g(d, "median")
            out.append(f"| {label} | {v:.4g} | {_runs(d)} |" if isinstance(v, (int, float)) else
                       f"| {label} | {v} | {_runs(d)} |")
    info = rd.get("llama_bench_info")
    if info:
        out += ["", f"llama-bench: build {info.get('build_commit')}, backends {info.get('backends')}, "
                    f"model {_gib(info.get('model_size'))}, {info.get('model_n_params')} parameters."]
    out += ["", "llama-mtmd-cli runs with `-n 0 -lv 4 --jinja`: the GGUF's own chat template (the training "
                "template, system text included; without `--jinja` it falls back to a built-in format that drops "
                "the default system text, about 30 positions fewer than the engine evaluates); its time to first "
                "token is read from its timestamped log, from the line "
                "before it evaluates the message to the perf print after it (its llama_perf prompt counters do "
                "not cover the whole multimodal prompt)."]
    out += ["", "The engine's decode rate counts n−1 evaluations for n tokens (the first token comes from the "
                "prompt's logits); `Stats.tokens_per_s` divides n by the same time and so reads ~1/n high.", ""]
    return out


def _section_ceiling(r: dict[str, Any]) -> list[str]:
    b = r.get("bandwidth")
    if not b:
        return []
    bw = b["bandwidth"]
    out = ["## Memory bandwidth and the decode ceiling", "",
           f"Read bandwidth ({bw.get('method')}): {bw['bytes_per_s'] / 1e9:.1f} GB/s, the highest median of "
           + "; ".join(f"{k}: median {v['median_bytes_per_s'] / 1e9:.1f}, best {v['best_bytes_per_s'] / 1e9:.1f} GB/s"
                       for k, v in bw.get("kernels", {}).items())
           + "."]
    if "weights" in b:
        w = b["weights"]
        kv = b["kv_bytes_per_token_at_depth"]
        eng = _med(r.get("rounds", {}), "engine", "tokens_per_s")
        lbd = _med(r.get("rounds", {}), "llama_bench_tg_same_depth")
        lb0 = _med(r.get("rounds", {}), "llama_bench_tg_depth0")
        c0, cd = b["ceiling_tokens_per_s_depth0"], b["ceiling_tokens_per_s_at_depth"]
        out += ["", f"Bytes read per token: weights {w['weights_read_per_token'] / 1e9:.2f} GB (all tensors but "
                    f"the embedding table, plus one of its rows) + KV cache {kv['bytes'] / 1e9:.3f} GB at depth "
                    f"{kv['depth']}.",
                "", "| | tokens/s | share of ceiling |", "|---|---|---|",
                f"| ceiling, depth 0 | {c0:.2f} | |",
                f"| ceiling, depth {kv['depth']} | {cd:.2f} | |",
                f"| llama-bench tg, depth 0 | {_fmt(lb0)} | {_fmt(lb0 / c0 * 100 if lb0 else None, '%', 0)} |",
                f"| llama-bench tg, depth {kv['depth']} | {_fmt(lbd)} | "
                f"{_fmt(lbd / cd * 100 if lbd else None, '%', 0)} |",
                f"| web2code generate (depth {kv['depth']}+) | {_fmt(eng)} | "
                f"{_fmt(eng / cd * 100 if eng else None, '%', 0)} |", ""]
    return out


def _section_batches(r: dict[str, Any]) -> list[str]:
    b = r.get("batches")
    if not b:
        return []
    cost = {row["rows"]: row["s_per_batch"] for row in b["rows"]}
    if 3 in cost and 4 in cost and cost[4] <= cost[3]:
        padding = ("Here the repacked Q4_K kernels multiply four rows at a time: a 4-row batch costs no more than "
                   "a 3-row one, which is why the engine pads batches of 2-3 rows to 4 with throw-away rows and "
                   "drafts 3 tokens per verify step.")
    else:
        padding = ("On this CPU a 4-row batch costs more than a 3-row one, so the engine's padding of 2-3 rows to "
                   "4 (chosen where four rows cost no more than three) does not pay here; drafting weighs what "
                   "the verify batches it runs really cost (speculative.StepCosts).")
    out = ["## What a batch of n rows costs", "",
           "One `llama_decode` of n token rows against one row (`llama-bench` pp n, one ubatch, median of the "
           f"repetitions; `{b['cmd']}`). Generation steps of several variants and speculative verify batches are "
           f"such batches. {padding}", "",
           "| rows | tokens/s | s per batch | × one row |", "|---|---|---|---|"]
    for row in b["rows"]:
        out.append(f"| {row['rows']} | {row['tokens_per_s']:.2f} | {row['s_per_batch']:.3f} | {row['x_one_row']}× |")
    return [*out, ""]


def _section_inproc(r: dict[str, Any]) -> list[str]:
    ip = r.get("inproc")
    if not ip:
        return []
    out = ["## Reuse and variants (engine in-process, LocalBackend)", ""]
    ru = ip.get("reuse")
    if ru:
        out += ["Cold = a new page on the loaded model (image encode + prefill of every position after the shared "
                "system text); reuse = the same page again with another seed. Times are wall clock from the "
                "request to the first token.", "",
                f"- cold: {_med(ru, 'cold_ttft_s')} s (runs {_runs(ru['cold_ttft_s'])}); positions evaluated "
                f"{ru['cold_positions_evaluated']}",
                f"- reuse: {_med(ru, 'reuse_ttft_s')} s (runs {_runs(ru['reuse_ttft_s'])}); positions evaluated "
                f"{ru['reuse_positions_evaluated']}; image from cache {ru['reuse_image_cached']}",
                f"- ratio: {_med(ru, 'ratio')} (runs {_runs(ru['ratio'])})", ""]
    va = ip.get("variants")
    if va:
        fm = va.get("first_multi_variant_request", {})
        out += [f"Variants: {va['tokens_per_variant']} tokens per variant, same page, warm (image cached, prompt "
                "in the KV cache).", "",
                f"- one variant: {_med(va, 'one_wall_s')} s wall, decode {_med(va, 'one_decode_s')} s",
                f"- three variants: {_med(va, 'three_wall_s')} s wall, decode {_med(va, 'three_decode_s')} s; "
                f"tokens {va['n_generated_three']}",
                f"- ratio (wall): {_med(va, 'ratio_wall')} (runs {_runs(va['ratio_wall'])}); ratio (decode only): "
                f"{_med(va, 'ratio_decode')}",
                f"- the first multi-variant request re-creates the context (more sequences and cells) and moves "
                f"the prompt's KV cells into it: {fm.get('wall_s', 0):.2f} s wall, prefill "
                f"{fm.get('prefill_s', 0):.2f} s, positions evaluated "
                f"{fm.get('n_prompt_tokens', 0) - fm.get('reused_prefix_tokens', 0)} of {fm.get('n_prompt_tokens', 0)}",
                ""]
    return out


def _section_convert(r: dict[str, Any]) -> list[str]:
    cv = r.get("convert")
    ck = r.get("checkpoint", {})
    if not cv:
        return []
    out = ["## Converter", "",
           f"Input: random checkpoint, {ck.get('bytes', 0) / 1e9:.2f} GB (bf16 `.bin` shards + index, CLIP tower "
           f"inside){'' if ck.get('cached') else ', generated in ' + str(ck.get('seconds')) + ' s'}.",
           f"Command: `{cv['cmd']}`", "",
           f"- wall time {cv['wall_s']:.0f} s (user {cv['user_s']} s, sys {cv['sys_s']} s); converter's own "
           f"phases: {cv.get('converter_timings_s')}",
           f"- peak RSS {_gib(cv['peak_rss_bytes'])} ({cv['peak_rss_source']}; the converter itself reports "
           f"{_gib(cv.get('converter_reported_peak_rss_bytes'))})",
           f"- cp of the same bytes ({cv['input_bytes'] / 1e9:.2f} GB in + {cv['output_bytes'] / 1e9:.2f} GB out): "
           f"{cv['cp_total_s']:.0f} s (runs: " + ", ".join(f"{x['input_s']:.0f}+{x['output_s']:.0f} s"
                                                      for x in cv["cp_runs"]) + f") → ratio {cv['ratio_vs_cp']:.2f}×",
           "", "| file | size |", "|---|---|"]
    out += [f"| {k} | {v / 1e9:.3f} GB ({_gib(v)}) |" for k, v in cv["file_sizes"].items()]
    out += ["", "Page cache: the machine has less RAM than input + output, so neither the converter nor cp runs "
                "from a fully cached input; cp runs right after the conversion.", ""]
    return out


def _section_memory(r: dict[str, Any]) -> list[str]:
    mem = r.get("memory")
    if not mem:
        return []
    w, p = mem["worker"], mem["parent"]
    out = ["## Resident memory with the pair loaded", "",
           "A fresh process (the application's side, no Qt) starts a WorkerBackend, generates one token, and "
           "reads /proc/<pid>/status of itself and of the worker.", "",
           "| process | VmRSS | VmHWM | RssAnon | RssFile |", "|---|---|---|---|---|",
           f"| worker | {_gib(w.get('VmRSS'))} | {_gib(w.get('VmHWM'))} | {_gib(w.get('RssAnon'))} | "
           f"{_gib(w.get('RssFile'))} |",
           f"| application side | {_gib(p.get('VmRSS'))} | {_gib(p.get('VmHWM'))} | {_gib(p.get('RssAnon'))} | "
           f"{_gib(p.get('RssFile'))} |", "",
           f"Total {_gib(mem['total_rss_bytes'])} (peaks {_gib(mem['total_hwm_bytes'])}) against files "
           f"{_gib(mem['files_bytes'])} + 1.5 GiB = {_gib(mem['budget_bytes'])}.", ""]
    diag = mem.get("diagnostics")
    if diag:
        out += ["Where it goes (llama.cpp loaded directly in a fresh process, one token decoded):", "",
                "| load | load s | RSS after load | RSS after a token | anon | file-backed |",
                "|---|---|---|---|---|---|"]
        for d in diag:
            if "error" in d:
                out.append(f"| {d['label']} | failed: {d['error'][-120:]} | | | | |")
                continue
            out.append(f"| {d['label']} | {d['load_s']:.1f} | {_gib(d['rss_after_load'])} | "
                       f"{_gib(d['rss_after_decode'])} | {_gib(d['anon_after_decode'])} | "
                       f"{_gib(d['file_after_decode'])} |")
        out.append("")
    rp = mem.get("repack_decode_tg32")
    if rp:
        out += ["Decode with CPU weight repacking off vs on (llama-bench tg32): "
                + ", ".join(f"repack {'on' if x['repack'] else 'off'} {x['tokens_per_s']:.2f} tok/s" for x in rp), ""]
    return out


def _section_replay(r: dict[str, Any]) -> list[str]:
    rp = r.get("replay")
    if not rp:
        return ["## Speculative decoding", "", "Not measured in this run (`--only replay`).", ""]
    padded = f", padded to {rp['padded_to']} rows" if rp.get("padded_to") else ""
    prior = (f"; the draft history starts with the built-in HTML prior ({rp['prior_tokens']} tokens)"
             if rp.get("prior_tokens") else "")
    lines = ["## Speculative decoding", "",
             "Replay: pages of `bench/corpus/` (whole, or their first tokens: see the counts) are forced as "
             "the model's output and "
             "produced through llama.cpp plainly (one token per decode) and with the engine's drafting policy "
             f"(up to {rp.get('draft_max')} drafted tokens verified in one batch{padded}{prior}); both fetch "
             "every evaluated position's logits and compute the distribution, as the engine does.", "",
             "| page | tokens | plain tok/s | speculative tok/s | speed-up | drafted | accepted |",
             "|---|---|---|---|---|---|---|"]
    for p in rp.get("pages", []):
        lines.append(f"| {p['page']} | {p['tokens']} | {p['plain_tok_s']} | {p['spec_tok_s']} | {p['speedup']}× "
                     f"| {p['drafted']} | {p['accepted']} ({p['acceptance']}) |")
    lines += ["", f"Total: {rp.get('total_speedup')}× (median page {rp.get('median_speedup')}×).", ""]
    ocr_rows = [p for p in rp.get("pages", []) if "ocr_tok_s" in p]
    if ocr_rows:
        lines += ["With the drafts from the image's own text (issue 16): each page's screenshot, rendered by the "
                  "fidelity renderer and read by the OCR (`bench/ocr_pages.py`), is given to the drafter as the "
                  "engine gives it once its OCR thread is done.", "",
                  "| page | tokens | plain tok/s | n-gram + text tok/s | speed-up | text drafted | text accepted |",
                  "|---|---|---|---|---|---|---|"]
        for p in ocr_rows:
            t = (p.get("ocr_sources") or {}).get("ocr", {})
            lines.append(f"| {p['page']} | {p['tokens']} | {p['plain_tok_s']} | {p['ocr_tok_s']} | "
                         f"{p['ocr_speedup']}× | {t.get('drafted', 0)} | {t.get('accepted', 0)} "
                         f"({t.get('acceptance', 0.0)}) |")
        lines += ["", f"Total with the image's text: {rp.get('ocr_total_speedup')}×; acceptance per source: "
                  + ", ".join(f"{k} {v['accepted']}/{v['drafted']} ({v['acceptance']})"
                              for k, v in (rp.get("ocr_sources") or {}).items()) + ".", ""]
    pr = rp.get("predicted_whole_corpus") or {}
    if pr:
        costs = pr.get("step_costs_s", {})
        one = costs.get("1")
        verify = {k: v for k, v in costs.items() if k != "1"}
        lines += ["Whole pages, every page of the corpus, predicted without the model: the same drafting policy "
                  "run over each page's tokens, each step priced at the step costs measured in the same process "
                  f"(one row {one} s; verify batch {', '.join(f'{k} rows {v} s' for k, v in verify.items())}). "
                  f"Predicted speed-up: total {pr.get('total_speedup')}×, median page {pr.get('median_speedup')}× "
                  "(" + ", ".join(f"{x['page'][:2]}: {x['speedup']}×" for x in pr.get("pages", [])) + ").", ""]
        if "ocr_total_speedup" in pr:
            lines += [f"With the image's text, predicted the same way: total {pr['ocr_total_speedup']}×, median page "
                      f"{pr.get('ocr_median_speedup')}× ("
                      + ", ".join(f"{x['page'][:2]}: {x.get('ocr_speedup')}×" for x in pr.get("pages", []))
                      + "); acceptance per source: "
                      + ", ".join(f"{k} {v['accepted']}/{v['drafted']} ({v['acceptance']})"
                                  for k, v in (pr.get("ocr_sources") or {}).items()) + ".", ""]
    return lines


def _section_gui(r: dict[str, Any]) -> list[str]:
    g = r.get("gui")
    if not g:
        return ["## GUI", "", "Not measured in this run.", ""]
    ws = g.get("window_shown", {})
    return ["## GUI", "",
            f"Window shown after launch (process start → first event-loop turn after MainWindow.show, "
            f"platform {ws.get('platform')}): median {ws.get('median_s')} s, runs {ws.get('runs_s')}"
            + (f"; errors: {ws.get('errors')}" if ws.get("errors") else "") + ".",
            f"Streaming (bench/gui_stream.py: the main window, the tiny pair through the worker, offscreen): "
            f"{json.dumps(g.get('streaming_preview'))}.", ""]


def write_report(results: dict[str, Any], md_path: Path) -> Path:
    png = md_path.with_suffix(".png")
    try:
        has_png = plot(results, png)
    except ImportError:
        has_png = False
        results.setdefault("notes", []).append("matplotlib missing: pip install -e '.[bench]' for the plot")
    repo = f"{Path(__file__).resolve().parents[1]}/"
    md_path.write_text(markdown(results, png.name if has_png else None).replace(repo, ""))
    return md_path


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m bench.report RESULTS.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    print(write_report(json.loads(path.read_text()), path.with_suffix(".md")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
