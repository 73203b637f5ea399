"""Compose apps: a user's compose file, checked, rewritten by the panel, run with compose.

The seed panel ran users' compose files verbatim, so `privileged: true` or a mount of the Docker
socket gave any user root on the host. Here a compose file is untrusted text:

- `load.parse_compose` reads it (`bounded_yaml`: at most 1 MiB, anchors and merge keys bounded;
  `interpolation`: `${VAR}`... from the project's variables and the app's `.env`, never from the
  panel's environment), resolves `extends`, reads `env_file`s, every path confined to the app
  folder, and returns an `app.ComposeApp`;
- `policy` refuses everything that reaches outside the container with a `ComposeRejected` that
  names the service and the option; `web` picks the service nginx routes to and its port;
- `render.render_compose` writes the panel's own file from an allow-list of keys (limits,
  labels, networks, volumes), with every `$` escaped;
- `runner.ComposeRunner` runs `docker compose` (v2) or `docker-compose` (v1) on it with a clean
  environment;
- `state` turns what a later rollback, stop or start needs (the app and the rendered file) into
  a versioned JSON document, and `stacks.ComposeStacks` keeps it in PostgreSQL, one row per
  deployment, so any worker on any host can use it.

`limits` holds every bound, `errors` the exceptions, `values` the readers of single values.
"""
