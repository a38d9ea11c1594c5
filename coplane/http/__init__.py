"""HTTP plumbing every router shares: the documented error body and the app's dependencies.

It sits just above the store, so the collector, the web UI and the services' own API routers
(slas, auth, orchestrate) all use it without importing one another.
"""
