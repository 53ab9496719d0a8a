"""Speculative decoding's model-free parts (the n-gram draft index, the drafting policy) and the one sampler."""

from __future__ import annotations

import numpy as np
import pytest

from web2code.app.engine.sampling import SEED_MAX, SamplingRule, TokenSampler, sample
from web2code.app.engine.speculative import (
    CPU_EXTRA_COST,
    PAUSE_WINDOW,
    PROBE_EVERY,
    Drafter,
    NgramIndex,
    StepCosts,
    prior_text,
)


def test_draft_continues_the_most_recent_earlier_occurrence() -> None:
    idx = NgramIndex(n_min=2, n_max=3)
    idx.extend([1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8, 1, 2, 3])
    # Suffix (1, 2, 3) last occurred before "7, 8": the draft follows that occurrence.
    assert idx.draft(4) == [7, 8, 1, 2]
    idx.append(7)
    assert idx.draft(2) == [8, 1]


def test_no_draft_without_a_match_and_never_across_the_image() -> None:
    idx = NgramIndex(n_min=2, n_max=4)
    idx.extend([5, 6, -1, -1, 7, 8])
    assert idx.draft(3) == []
    idx.extend([5, 6])
    assert idx.draft(3) == []  # what followed (5, 6) was the image
    idx.extend([1, 2, 3, 1, 2])
    assert idx.draft(5) == [3, 1, 2]


def test_the_prior_drafts_before_the_text_repeats_and_the_text_wins_over_it() -> None:
    d = Drafter(3, CPU_EXTRA_COST, prior=[10, 11, 12, 13, 14])
    d.extend([1, 2, 10, 11])  # prompt, then the output starts like the prior
    assert d.propose(8) == [12, 13, 14]
    d.extend([12, 13, 15, 16, 10, 11])  # the page itself went on differently
    assert d.propose(8) == [12, 13, 15]  # its own, more recent continuation wins
    assert d.propose(2) == [12, 13]  # never beyond the room left


def test_no_draft_runs_from_the_prior_into_the_prompt() -> None:
    d = Drafter(3, CPU_EXTRA_COST, prior=[10, 11])
    d.extend([1, 2, 3, 10, 11])
    # (10, 11) ended the prior: what followed it is the boundary, not the prompt's first tokens.
    assert d.propose(3) == []
    assert d.index.tokens[:3] == [10, 11, -1]


def test_drafting_pauses_when_it_stops_paying_and_probes_again() -> None:
    d = Drafter(3, CPU_EXTRA_COST)
    d.extend([1, 2, 3, 4] * 4 + [1, 2])
    for _ in range(PAUSE_WINDOW):
        assert d.propose(10) == [3, 4, 1]
        d.record(3, 0)  # every draft rejected
    assert d.paused
    assert [d.propose(10) for _ in range(PROBE_EVERY)] == [[]] * PROBE_EVERY
    assert d.propose(10) == [3, 4, 1]  # the probe
    for _ in range(PAUSE_WINDOW // 2):
        d.record(3, 3)
    assert not d.paused  # half the window accepted everything: 1.5 tokens a step pays for the batch
    assert d.propose(10) == [3, 4, 1]
    assert d.drafted == 3 * (PAUSE_WINDOW + PAUSE_WINDOW // 2)
    assert d.accepted == 3 * (PAUSE_WINDOW // 2)


def test_the_window_compares_accepted_tokens_with_the_batch_cost() -> None:
    d = Drafter(3, 0.5)
    d.extend([1, 2, 1, 2])
    for accepted in [1, 0] * (PAUSE_WINDOW // 2):
        d.record(3, accepted)
    assert not d.paused  # 0.5 tokens a step: just pays
    d.record(3, 0)
    assert d.paused


def test_the_batch_cost_is_the_device_s_own_once_measured() -> None:
    costs = StepCosts(CPU_EXTRA_COST, min_samples=4)
    for _ in range(3):
        costs.add(1, 0.15)
        costs.add(4, 0.35)
    assert costs.extra == CPU_EXTRA_COST and not costs.calibrated  # too few to go by
    costs.add(1, 0.15)
    costs.add(4, 0.36)
    assert costs.calibrated and costs.extra == pytest.approx(0.35 / 0.15 - 1)
    costs.add(4, 9.0)  # one step of a busy machine hardly moves the median
    assert costs.extra == pytest.approx(0.35 / 0.15 - 1)
    costs.add(1, 0.0)  # a step not timed is no measurement
    assert len(costs.single) == 4


def test_drafts_that_pay_on_one_device_pause_on_a_device_where_batches_cost_more() -> None:
    """1.25 tokens kept a step pays for a batch that costs 0.5 steps more, not for one that costs 1.4 more."""
    slow_batches = StepCosts(CPU_EXTRA_COST, min_samples=1)
    slow_batches.add(1, 0.10)
    slow_batches.add(4, 0.24)
    drafters = {"default": Drafter(3, CPU_EXTRA_COST), "measured": Drafter(3, CPU_EXTRA_COST, costs=slow_batches)}
    for d in drafters.values():
        d.extend([1, 2, 1, 2])
        for accepted in [2, 1, 1, 1] * (PAUSE_WINDOW // 4):
            d.record(3, accepted)
    assert not drafters["default"].paused
    assert drafters["measured"].paused and drafters["measured"].extra_cost == pytest.approx(1.4)


def test_the_built_in_prior_is_html() -> None:
    text = prior_text()
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert "</html>" in text and "<style>" in text


def _logits(p: np.ndarray) -> np.ndarray:
    return np.log(p).astype(np.float32)


def test_greedy_chooses_the_argmax_and_draws_nothing() -> None:
    s = TokenSampler(SamplingRule(0.0), seed=1)
    state = s._rng.bit_generator.state
    assert s.choose(_logits(np.array([0.1, 0.6, 0.3]))) == 1
    assert s._rng.bit_generator.state == state


def test_each_sampled_token_takes_exactly_one_draw_so_every_path_agrees() -> None:
    """Whatever order the logits arrive in (one step, a verify batch, a variant), the k-th token uses the
    k-th draw of the seed's stream: the same seed gives the same tokens."""
    rng = np.random.default_rng(5)
    dists = [rng.dirichlet(np.ones(50)) for _ in range(200)]
    a = TokenSampler(SamplingRule(0.8), seed=SEED_MAX)
    b = TokenSampler(SamplingRule(0.8), seed=SEED_MAX)
    ta = [a.choose(_logits(p)) for p in dists]
    tb = []
    for i in range(0, 200, 4):  # "verify batches" of 4: the same calls in the same order
        tb.extend(b.choose(_logits(p)) for p in dists[i:i + 4])
    assert ta == tb
    c = TokenSampler(SamplingRule(0.8), seed=SEED_MAX - 1)
    assert [c.choose(_logits(p)) for p in dists] != ta
    with pytest.raises(ValueError):
        TokenSampler(SamplingRule(0.8), seed=SEED_MAX + 1)


def test_the_penalty_sees_only_accepted_tokens() -> None:
    s = TokenSampler(SamplingRule(0.0, repeat_penalty=100.0), seed=0)
    logits = np.array([3.0, 2.0, 1.0], dtype=np.float32)
    assert s.choose(logits) == 0
    assert s.choose(logits) == 0  # chosen but not accepted: no penalty yet
    s.accept(0)
    assert s.choose(logits) == 1


@pytest.mark.parametrize("draft", [0, 2, 4])
def test_sampled_tokens_follow_p_and_a_draft_is_kept_with_probability_p_of_the_draft(draft: int) -> None:
    # A draft is kept when it equals the chosen token: probability p(draft), the standard
    # speculative acceptance for a deterministic draft; the emitted tokens follow p exactly.
    p = np.array([0.05, 0.40, 0.25, 0.20, 0.10])
    s = TokenSampler(SamplingRule(1.0), seed=1234)
    n = 40_000
    counts = np.zeros_like(p)
    accepted = 0
    for _ in range(n):
        tok = s.choose(_logits(p))
        counts[tok] += 1
        accepted += tok == draft
    expected = p * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # 4 degrees of freedom, p ≈ 0.0004
    assert abs(accepted / n - p[draft]) < 0.01


def test_a_rule_that_always_accepted_the_draft_would_be_caught() -> None:
    # The chi-square check above is not vacuous: accepting every draft skews p.
    p = np.array([0.05, 0.40, 0.25, 0.20, 0.10])
    n = 40_000
    counts = np.zeros_like(p)
    counts[2] = n
    expected = p * n
    assert float(((counts - expected) ** 2 / expected).sum()) > 20.5


def test_sampling_rule_matches_the_chain_semantics() -> None:
    logits = np.array([2.0, 1.0, 0.5, -1.0], dtype=np.float32)
    offset = np.array([0.0, 1.5, 0.0, 0.0], dtype=np.float32)
    greedy = SamplingRule(0.0)
    assert int(np.argmax(greedy.probabilities(logits, offset, []))) == 1  # the offset decides
    rule = SamplingRule(1.0, top_k=2)
    p = rule.probabilities(logits, None, [])
    assert p[2] == 0 and p[3] == 0 and p[0] > p[1] > 0
    top_p = SamplingRule(1.0, top_p=0.5).probabilities(logits, None, [])
    assert np.count_nonzero(top_p) == 1
    pen = SamplingRule(0.0, repeat_penalty=4.0).adjusted(logits, None, [0, 3])
    assert pen[0] == pytest.approx(0.5) and pen[3] == pytest.approx(-4.0)
    rng = np.random.default_rng(0)
    draws = [sample(rule.probabilities(logits, None, []), rng) for _ in range(2000)]
    assert set(draws) == {0, 1}
