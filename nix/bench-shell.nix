# `nix develop .#bench`: the stacks the benchmark compares poem-api with, from nixpkgs instead of
# a virtualenv: one Python with Flask and gunicorn, uWSGI, nginx, and wrk to drive the load.
{
  mkShell,
  python3,
  uwsgi,
  nginx,
  wrk,
}:
let
  python = python3.withPackages (ps: [
    ps.flask
    ps.gunicorn
  ]);
in
mkShell {
  packages = [
    python
    # nixpkgs has no python3Packages.uwsgi: uWSGI is a server with language plugins
    # (pkgs/by-name/uw/uwsgi); load this one with `--plugin python3`.
    (uwsgi.override { plugins = [ "python3" ]; })
    nginx
    wrk
  ];
  # uWSGI embeds the interpreter but not the environment's packages: point it at them.
  PYTHONPATH = "${python}/${python3.sitePackages}";
}
