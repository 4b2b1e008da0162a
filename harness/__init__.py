"""vireid-bench harness: configuration, training, evaluation, tracking, tuning, reports."""
