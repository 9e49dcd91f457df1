"""Who may do what: operators (``OPS_TOKEN``, ``operators.py``) and the owners of jobs
and batches (their session or ``controlToken``, ``owners.py``). Workers prove themselves
where they call in (``website/progress``, ``website/claims``). docs/security.md has
the whole table."""
