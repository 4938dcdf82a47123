"""wiring: one builder per function, each building only what that function uses (a watcher never imports a
restore engine). Builders are cached per warm execution environment; `endpoint_url` is part of each cache
key so a changed endpoint rebuilds. This package imports nothing itself: import the function's module."""
