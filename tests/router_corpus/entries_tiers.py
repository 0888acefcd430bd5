"""Corpus entries aimed at the complexity tiers (no personal data, no injection).

Tier labels answer "what model does this need?": simple = lookup, rewrite, format, translate,
chit-chat, whatever the length; medium = one focused piece of work (a function, an
explanation, a structured draft); complex = reasoning that must hold together over several
steps (proofs, designs with trade-offs, non-trivial debugging, multi-part analysis).
"""

from __future__ import annotations

S, M, C = "simple", "medium", "complex"

_LONG_LETTER = (
    "Dear neighbours, the summer street party will take place on Saturday the 14th from noon "
    "until eight in the evening. Please move your cars before ten so the tables can be set up. "
    "Bring a dish to share if you can, and label anything that contains nuts. Children's games "
    "start at two, the raffle is at five, and the band plays from six. Thank you all for "
    "helping to make our street such a friendly place to live. "
)
_SHOPPING = ", ".join(
    f"{item} x{count}" for count, item in enumerate(
        ("apples", "oat milk", "basmati rice", "tomatoes", "olive oil", "dish soap", "coffee",
         "eggs", "spinach", "lemons", "tortillas", "black beans", "cheddar", "yoghurt", "bread",
         "onions", "garlic", "paper towels", "pasta", "tinned tuna") * 6, start=1)
)  # fmt: skip
_LOG_LINES = "\n".join(
    f"2024-06-0{day % 9 + 1} 10:{minute:02d}:00 INFO request served in {20 + minute % 7} ms"
    for day in range(3)
    for minute in range(60)
)
_ARTICLE = (
    "The history of the bicycle begins in the early nineteenth century with the draisine, a "
    "wooden running machine without pedals. Pedals attached to the front wheel arrived in the "
    "1860s, the high-wheeler followed, and the safety bicycle with a chain drive and two "
    "wheels of equal size became the standard design by the 1890s. Pneumatic tyres made "
    "riding far more comfortable, and cycling clubs spread across Europe and America. "
) * 12

# fmt: off
TIER_ENTRIES: list[tuple[str, str, tuple[str, ...], bool, str]] = [
    # --- simple ----------------------------------------------------------------------------
    ("tier-s-hello", "hi! how are you today?", (), False, S),
    ("tier-s-capital", "What is the capital of Australia?", (), False, S),
    ("tier-s-translate", "Translate 'where is the train station' into Spanish.", (), False, S),
    ("tier-s-synonym", "Give me a synonym for 'happy'.", (), False, S),
    ("tier-s-spell", "How do you spell 'necessary'?", (), False, S),
    ("tier-s-convert", "How many centimetres are in 5 feet?", (), False, S),
    ("tier-s-thanks", "Thanks, that worked perfectly!", (), False, S),
    ("tier-s-joke", "Tell me a short joke about cats.", (), False, S),
    ("tier-s-date", "What day of the week was 1 January 2000?", (), False, S),
    ("tier-s-fix-typo", "Fix the typos: 'Teh meeting is tommorow at noon, dont be late.'",
     (), False, S),
    ("tier-s-long-letter", "Fix any typos in this letter and keep everything else the same:\n\n"
     + _LONG_LETTER * 14, (), False, S),
    ("tier-s-long-shopping", "Sort this shopping list alphabetically:\n" + _SHOPPING,
     (), False, S),
    ("tier-s-long-logs", "How many lines are in this log? Just the number.\n" + _LOG_LINES,
     (), False, S),
    ("tier-s-long-translate", "Translate this article into Italian:\n\n" + _ARTICLE,
     (), False, S),
    ("tier-s-long-title", "Suggest a title for this text:\n\n" + _ARTICLE, (), False, S),
    ("tier-s-uppercase", "Convert to upper case: the quick brown fox jumps over the lazy dog.",
     (), False, S),
    ("tier-s-json-key", "In {\"name\": \"Ana\", \"age\": 31}, what is the value of age?",
     (), False, S),
    ("tier-s-first-then", "First say hello, then say goodbye.", (), False, S),
    # --- medium ----------------------------------------------------------------------------
    ("tier-m-function", "Write a Python function that returns the n-th Fibonacci number "
     "iteratively.", (), False, M),
    ("tier-m-explain-dns", "Explain how DNS resolution works when I type a URL into the "
     "browser.", (), False, M),
    ("tier-m-sql", "Write an SQL query that lists the ten customers with the highest total "
     "order value in 2023, from tables customers(id, name) and orders(id, customer_id, total, "
     "created_at).", (), False, M),
    ("tier-m-email", "Draft an email to my team announcing that the release moves to next "
     "Tuesday, explaining the reason (a failing payment test) and what each person should "
     "do before then.", (), False, M),
    ("tier-m-regex", "Write a regex that matches UK postcodes and explain each part.",
     (), False, M),
    ("tier-m-summary", "Summarize the main causes of the French Revolution in five bullet "
     "points.", (), False, M),
    ("tier-m-compare-lists", "Compare Python lists and tuples: when should I use each?",
     (), False, M),
    ("tier-m-bugfix", "Why does this raise IndexError?\n```python\nitems = [1, 2, 3]\nfor i in "
     "range(len(items) + 1):\n    print(items[i])\n```", (), False, M),
    ("tier-m-recipe", "Plan a three-course vegetarian dinner for six people with a shopping "
     "list and a cooking timeline.", (), False, M),
    ("tier-m-unit-tests", "Write pytest unit tests for a function slugify(title) that "
     "lowercases, strips punctuation and joins words with hyphens.", (), False, M),
    ("tier-m-cover-letter", "Write a cover letter for a junior data analyst role, highlighting"
     " my Excel and SQL experience and my degree in economics.", (), False, M),
    ("tier-m-explain-recursion", "Explain recursion to a 12-year-old with an example.",
     (), False, M),
    ("tier-m-steps", "Give me step-by-step instructions to set up SSH keys for GitHub on a "
     "Mac.", (), False, M),
    ("tier-m-convert-code", "Convert this JavaScript to Python:\n```js\nconst total = items"
     ".filter(i => i.active).map(i => i.price).reduce((a, b) => a + b, 0);\n```",
     (), False, M),
    ("tier-m-long-summary", "Summarize this article in three bullet points and explain why "
     "the safety bicycle won:\n\n" + _ARTICLE, (), False, M),
    # --- complex ---------------------------------------------------------------------------
    ("tier-c-prove-sqrt2", "Prove that the square root of 2 is irrational.", (), False, C),
    ("tier-c-primes", "Prove there are infinitely many primes of the form 4k+3.", (), False, C),
    ("tier-c-design", "Design a distributed rate limiter for a multi-region API gateway. "
     "Compare token bucket and sliding window approaches, analyze the consistency trade-offs "
     "between regions, and describe failure modes when Redis is unavailable.", (), False, C),
    ("tier-c-debug-race", "Our Go service occasionally returns stale balances. Two goroutines"
     " update the same account map and we use a RWMutex only on reads. Analyze the race "
     "condition, explain why it is intermittent, and propose a fix with tests that prove it."
     , (), False, C),
    ("tier-c-algo", "Given an array of n integers, find the length of the longest subarray "
     "whose sum is divisible by k in O(n) time. Derive the algorithm, prove its correctness "
     "and analyse space complexity.", (), False, C),
    ("tier-c-migration", "We need to migrate a 4 TB PostgreSQL database to a new cluster "
     "with under 5 minutes of downtime. First list the options (logical replication, "
     "pg_dump, physical replication), then evaluate each against our constraints, and "
     "finally write a step-by-step migration plan with rollback points.", (), False, C),
    ("tier-c-stats", "Derive the maximum likelihood estimator for the variance of a normal "
     "distribution and show whether it is biased.", (), False, C),
    ("tier-c-architecture", "Critique this architecture: a monolith writes events to Kafka, "
     "three microservices consume them, and each keeps its own Postgres. Where are the "
     "consistency risks, what happens on replay, and how would you redesign it?",
     (), False, C),
    ("tier-c-short-induction", "Prove by induction that 1 + 2 + ... + n = n(n+1)/2.",
     (), False, C),
    ("tier-c-tradeoffs", "Compare the trade-offs of event sourcing versus CRUD with audit "
     "tables for a banking ledger, considering regulatory audits, schema evolution and "
     "query performance. Recommend one and justify it.", (), False, C),
    ("tier-c-concurrency", "Explain why double-checked locking is broken in Java without "
     "volatile, step by step, referring to the memory model.", (), False, C),
    ("tier-c-optimize", "This query takes 40 s on 200M rows:\n```sql\nSELECT user_id, "
     "count(*) FROM events WHERE created_at > now() - interval '7 days' GROUP BY user_id "
     "ORDER BY 2 DESC LIMIT 100;\n```\nAnalyze the query plan options and optimize it; "
     "consider indexes, partitioning and pre-aggregation trade-offs.", (), False, C),
    ("tier-c-threat-model", "Write a threat model for a browser extension that reads page "
     "content and sends it to an LLM API: assets, trust boundaries, attack paths and "
     "mitigations.", (), False, C),
    ("tier-c-game-theory", "Two firms choose prices simultaneously with linear demand q = "
     "a - bp and constant marginal cost c. Derive the Bertrand equilibrium and explain why "
     "the result changes with capacity constraints.", (), False, C),
    ("tier-c-multi-turn-math", "Let f(x) = x^3 - 3x + 1. Show that f has three real roots "
     "and use the intermediate value theorem to locate each within an interval of length 1.",
     (), False, C),
    ("tier-c-refactor-plan", "Here is a 2,000-line Django view module mixing billing, auth "
     "and reporting. Propose a refactoring plan into services and selectors, identify the "
     "riskiest steps, and explain how to keep behaviour identical while doing it.",
     (), False, C),
]
# fmt: on
