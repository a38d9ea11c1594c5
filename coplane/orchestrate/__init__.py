"""Acting on the dataflow: the flow SDK, deployments, workers, automations and remediation runs.

Layer: a service, beside `coplane.slas` (see the import contracts in pyproject.toml). Its
server side may import `alerts`, `auth`, `jobs`, `http`, `settings`, the store and the domain
below it; never `web`, `collector`, `integrations` or the entry points. The flow SDK that users
import (`from coplane import flow, task`) runs in the user's process and talks to the server
only through `coplane.client`, like every collector: its modules import neither the store nor
any other server-side package.
"""
