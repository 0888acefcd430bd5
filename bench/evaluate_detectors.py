"""Measure the router detectors on the labelled corpus and time them on a 4,000-token chat.

    python bench/evaluate_detectors.py [--corpus PATH] [--iterations N] [--enforce-latency]

Prints precision/recall per PII kind and overall, injection recall and false-positive rate,
the tier confusion matrix and latency p50/p99. Exits 1 when a quality target is missed:
PII recall >= 0.95 at precision >= 0.95 (micro, over (prompt, kind) pairs), injection recall
>= 0.85 with FPR <= 5 % (a prompt counts as flagged when the verdict is "injection").
Latency is gated only with --enforce-latency (shared CI machines make it noisy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from gateway.detectors import (  # noqa: E402 - needs the project root on sys.path first
    detect_injection,
    detect_pii,
    extract_text,
    join_segments,
    score_complexity,
)
from gateway.detectors.complexity import COMPLEX, MEDIUM, SIMPLE  # noqa: E402
from gateway.detectors.injection import INJECTION, SUSPICIOUS  # noqa: E402

CORPUS_PATH = PROJECT_ROOT / "tests" / "router_corpus" / "corpus.jsonl"
PII_RECALL_TARGET = 0.95
PII_PRECISION_TARGET = 0.95
INJECTION_RECALL_TARGET = 0.85
INJECTION_FPR_TARGET = 0.05
LATENCY_P99_TARGET_MS = 1.0
TIERS = (SIMPLE, MEDIUM, COMPLEX)


@dataclass
class KindScore:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        expected = self.true_positives + self.false_negatives
        return self.true_positives / expected if expected else 1.0


@dataclass
class Evaluation:
    pii_by_kind: dict[str, KindScore] = field(default_factory=dict)
    pii_total: KindScore = field(default_factory=KindScore)
    injection_counts: dict[str, int] = field(default_factory=dict)
    tier_matrix: dict[tuple[str, str], int] = field(default_factory=dict)
    mistakes: list[str] = field(default_factory=list)

    @property
    def injection_recall(self) -> float:
        positives = self.injection_counts["tp"] + self.injection_counts["fn"]
        return self.injection_counts["tp"] / positives if positives else 1.0

    @property
    def injection_fpr(self) -> float:
        negatives = self.injection_counts["fp"] + self.injection_counts["tn"]
        return self.injection_counts["fp"] / negatives if negatives else 0.0

    def failed_targets(self) -> list[str]:
        failures = []
        if self.pii_total.recall < PII_RECALL_TARGET:
            failures.append(f"PII recall {self.pii_total.recall:.3f} < {PII_RECALL_TARGET}")
        if self.pii_total.precision < PII_PRECISION_TARGET:
            failures.append(
                f"PII precision {self.pii_total.precision:.3f} < {PII_PRECISION_TARGET}"
            )
        if self.injection_recall < INJECTION_RECALL_TARGET:
            failures.append(
                f"injection recall {self.injection_recall:.3f} < {INJECTION_RECALL_TARGET}"
            )
        if self.injection_fpr > INJECTION_FPR_TARGET:
            failures.append(f"injection FPR {self.injection_fpr:.3f} > {INJECTION_FPR_TARGET}")
        return failures


def load_corpus(path: Path = CORPUS_PATH) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def evaluate(corpus: Sequence[dict[str, Any]]) -> Evaluation:
    result = Evaluation()
    result.injection_counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "suspicious": 0}
    for row in corpus:
        text = row["text"]
        expected_kinds = set(row["pii_kinds"])
        found_kinds = set(detect_pii(text).kinds)
        for kind in expected_kinds | found_kinds:
            score = result.pii_by_kind.setdefault(kind, KindScore())
            if kind in expected_kinds and kind in found_kinds:
                score.true_positives += 1
                result.pii_total.true_positives += 1
            elif kind in found_kinds:
                score.false_positives += 1
                result.pii_total.false_positives += 1
                result.mistakes.append(f"PII false positive {kind}: {row['id']}")
            else:
                score.false_negatives += 1
                result.pii_total.false_negatives += 1
                result.mistakes.append(f"PII missed {kind}: {row['id']}")

        verdict = detect_injection(text)
        is_flagged = verdict.verdict == INJECTION
        result.injection_counts["suspicious"] += verdict.verdict == SUSPICIOUS
        if row["injection"]:
            result.injection_counts["tp" if is_flagged else "fn"] += 1
            if not is_flagged:
                result.mistakes.append(f"injection missed ({verdict.verdict}): {row['id']}")
        else:
            result.injection_counts["fp" if is_flagged else "tn"] += 1
            if is_flagged:
                result.mistakes.append(f"injection false positive: {row['id']}")

        tier = score_complexity(text).tier
        key = (row["tier"], tier)
        result.tier_matrix[key] = result.tier_matrix.get(key, 0) + 1
    return result


def latency_conversation(target_tokens: int = 4_000) -> list[dict[str, Any]]:
    """A realistic mixed chat (prose, code, numbers, a list) of about `target_tokens` tokens."""
    user_turns = (
        "We are moving our billing service from cron jobs to a queue. The nightly job reads "
        "about 40,000 invoices, applies discounts and writes PDFs to S3. It takes 2.5 hours "
        "and sometimes times out. Can you suggest how to split it into tasks?",
        "Here is the current loop, what would you change?\n```python\nfor invoice in "
        "Invoice.objects.filter(status='open'):\n    total = sum(line.amount for line in "
        "invoice.lines.all())\n    if invoice.customer.is_vip:\n        total *= Decimal('0.9')"
        "\n    render_pdf(invoice, total)\n    invoice.status = 'sent'\n    invoice.save()\n```",
        "Good points. How should retries work if the PDF renderer fails for one invoice? We "
        "use Celery 5.3 with Redis as the broker, and version 2.4.1 of our renderer.",
        "Also, finance wants a summary e-mail at 07:00 with totals per region (EMEA, APAC, "
        "AMER) and the number of failures. Draft the task for that too.",
    )
    assistant_turn = (
        "Split the job into one task per invoice batch of 200 and make each task idempotent: "
        "1. Select the ids to process and enqueue batches. 2. In each task, lock the rows "
        "with select_for_update(skip_locked=True). 3. Render, upload and mark as sent in one "
        "transaction. 4. Record failures in a table so the summary can count them.\n"
        "```python\n@shared_task(bind=True, max_retries=5, acks_late=True)\ndef "
        "send_invoice_batch(self, invoice_ids: list[int]) -> None:\n    for invoice in "
        "Invoice.objects.filter(id__in=invoice_ids, status='open'):\n        try:\n"
        "            render_and_send(invoice)\n        except RendererError as exc:\n"
        "            raise self.retry(exc=exc, countdown=2 ** self.request.retries)\n```\n"
        "Use exponential backoff, cap retries, and alert when the failure table grows. "
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a senior backend engineer. Be concise."}
    ]
    turn = 0
    while sum(len(str(message["content"])) for message in messages) < target_tokens * 4:
        messages.append({"role": "user", "content": user_turns[turn % len(user_turns)]})
        messages.append(
            {"role": "assistant", "content": [{"type": "text", "text": assistant_turn}]}
        )
        turn += 1
    return messages


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (
        ordered[len(ordered) // 2] * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


def measure_latency(iterations: int) -> dict[str, tuple[float, float]]:
    """p50/p99 in milliseconds of each detector and of the whole decision, same input."""
    messages = latency_conversation()
    segments = extract_text(messages)
    text = join_segments(segments)
    steps: dict[str, Callable[[], object]] = {
        "privacy": lambda: detect_pii(text),
        "complexity": lambda: score_complexity(segments),
        "injection": lambda: detect_injection(text),
    }

    def all_detectors() -> None:
        all_segments = extract_text(messages)
        all_text = join_segments(all_segments)
        detect_pii(all_text)
        score_complexity(all_segments)
        detect_injection(all_text)

    steps["all (extract + 3 detectors)"] = all_detectors
    for step in steps.values():  # warm caches and the regex compiler
        step()
    results = {}
    for name, step in steps.items():
        samples = []
        for _ in range(iterations):
            started = time.perf_counter()
            step()
            samples.append(time.perf_counter() - started)
        results[name] = _percentiles(samples)
    return results


def _calibration_ms() -> float:
    """A fixed pure-Python workload, to compare this machine's speed with another's."""
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        sum(range(100_000))
        samples.append(time.perf_counter() - started)
    return sorted(samples)[10] * 1000


def print_report(evaluation: Evaluation, corpus_size: int) -> None:
    print(f"corpus: {corpus_size} prompts\n")
    print(f"{'PII kind':<16}{'precision':>10}{'recall':>8}{'tp':>5}{'fp':>5}{'fn':>5}")
    for kind, score in sorted(evaluation.pii_by_kind.items()):
        print(
            f"{kind:<16}{score.precision:>10.3f}{score.recall:>8.3f}"
            f"{score.true_positives:>5}{score.false_positives:>5}{score.false_negatives:>5}"
        )
    total = evaluation.pii_total
    print(
        f"{'overall':<16}{total.precision:>10.3f}{total.recall:>8.3f}"
        f"{total.true_positives:>5}{total.false_positives:>5}{total.false_negatives:>5}\n"
    )
    counts = evaluation.injection_counts
    print(
        f"injection: recall {evaluation.injection_recall:.3f} "
        f"({counts['tp']}/{counts['tp'] + counts['fn']}), "
        f"FPR {evaluation.injection_fpr:.3f} ({counts['fp']}/{counts['fp'] + counts['tn']}), "
        f"'suspicious' verdicts (not counted as flagged): {counts['suspicious']}\n"
    )
    print("tier confusion (rows = label, columns = predicted)")
    print(f"{'':<10}" + "".join(f"{tier:>9}" for tier in TIERS))
    for label in TIERS:
        row = "".join(f"{evaluation.tier_matrix.get((label, p), 0):>9}" for p in TIERS)
        print(f"{label:<10}{row}")
    correct = sum(evaluation.tier_matrix.get((tier, tier), 0) for tier in TIERS)
    print(f"tier accuracy {correct / corpus_size:.3f}\n")
    if evaluation.mistakes:
        print("mistakes:")
        for mistake in evaluation.mistakes:
            print(f"  {mistake}")
        print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS_PATH)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--enforce-latency", action="store_true")
    args = parser.parse_args(argv)

    corpus = load_corpus(args.corpus)
    evaluation = evaluate(corpus)
    print_report(evaluation, len(corpus))
    failures = evaluation.failed_targets()

    conversation_chars = len(join_segments(extract_text(latency_conversation())))
    print(
        f"latency on a {conversation_chars:,}-character (~4,000-token) conversation, "
        f"{args.iterations} runs; calibration sum(range(100_000)) = {_calibration_ms():.2f} ms"
    )
    for name, (p50, p99) in measure_latency(args.iterations).items():
        print(f"  {name:<28} p50 {p50:6.3f} ms   p99 {p99:6.3f} ms")
        if name.startswith("all") and args.enforce_latency and p99 > LATENCY_P99_TARGET_MS:
            failures.append(f"latency p99 {p99:.3f} ms > {LATENCY_P99_TARGET_MS} ms")

    if failures:
        print("\nTARGETS MISSED: " + "; ".join(failures))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
