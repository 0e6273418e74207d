"""The HTTP routes, one APIRouter per audience: :mod:`.shop` (shoppers: search, rerank,
recommend, classify, events), :mod:`.ops` (operators and their tools: health, readiness,
metrics, traffic, the dashboard, rollout status), :mod:`.admin` (behind the admin token:
rollouts and reloads). Thin over :mod:`shelfops.serve.state` and :mod:`shelfops.serve.routing`."""
