#!/usr/bin/env bash
# Install or upgrade transcriber as systemd services on this Linux machine. Safe to re-run: that is how you
# upgrade. The whole guide is docs/linux.md.
set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: sudo deploy/linux/install.sh [OPTIONS]

Installs transcriber into a virtualenv, writes /etc/transcriber/transcriber.env from .env.example when
there is none (an existing one is never overwritten), creates the user 'transcriber' and the folders,
migrates the database, installs the systemd units and enables and starts the chosen ones:

  transcriber-worker@1 .. @N   --workers N (default 1; 0 = none)
  transcriber-beat             unless --no-beat     (exactly ONE beat in the whole deployment)
  transcriber-watch            unless --no-watcher  (one watcher per watched folder)
  transcriber-flower           with --with-flower
  transcriber-metrics          with --with-metrics  (one per deployment is enough)

The choice of units (and --prefix, --concurrency) is kept in /etc/transcriber/install-options: a re-run
without options keeps them, an option given now wins. A re-run stops the services first (a warm stop hands
running calls back to the queue) and starts them again at the end.

Options:
  --prefix DIR          the virtualenv (default /opt/transcriber)
  --data-dir DIR        DATA_DIR written into a new settings file (default /var/lib/transcriber)
  --watch-dir DIR       WATCH_DIR for a new settings file (default /srv/transcriber/inbox)
  --output-dir DIR      OUTPUT_DIR for a new settings file (default /srv/transcriber/transcripts)
                        (an existing settings file says where the folders are: these must agree with it)
  --workers N           worker instances transcriber-worker@1..N (default 1)
  --concurrency N|auto  model processes per worker instance (default auto: one per core, see README)
  --no-beat, --beat     leave out (or bring back) beat
  --no-watcher, --watcher
  --with-flower, --without-flower
  --with-metrics, --without-metrics
  --wheelhouse DIR      install from these wheels only, no index (offline servers; docs/linux.md)
  --python PATH         the Python (3.11+) to make the virtualenv with (default python3)
  --source DIR          the transcriber source folder (default: two levels above this script)
  --no-start            enable the units but do not start them
  --uninstall           stop, disable and remove the units and the wrapper; keep settings, data, virtualenv
  --root DIR            write the settings file, folders and units under DIR and change nothing else: no user,
                        no pip (--prefix must hold transcriber already), no migration, no running systemd
                        (units are enabled with systemctl --root). For tests and packaging.
  --dry-run             print what would be done, change nothing
  -h, --help            this text
EOF
}

die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}
trap 'printf "install.sh: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

say() { printf '==> %s\n' "$*"; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNITS=(transcriber.target transcriber-worker@.service transcriber-beat.service transcriber-watch.service
  transcriber-flower.service transcriber-metrics.service)
SERVICE_USER=transcriber
ETC=/etc/transcriber
ENV_FILE=$ETC/transcriber.env
OPTIONS_FILE=$ETC/install-options
UNIT_DIR=/etc/systemd/system
WRAPPER=/usr/local/bin/transcriber
WRAPPER_MARK='# transcriber wrapper, written by deploy/linux/install.sh'

PREFIX=/opt/transcriber
DATA_DIR='' WATCH_DIR='' OUTPUT_DIR=''
WORKERS=1 CONCURRENCY=auto BEAT=yes WATCHER=yes FLOWER=no METRICS=no
WHEELHOUSE='' PYTHON=python3 SOURCE=$(cd "$HERE/../.." && pwd)
START=yes UNINSTALL=no ROOT='' DRY=no

need_value() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }

# --root first: the options kept by an earlier run are read from under it, and the command line wins over them.
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --root) ROOT=${args[i + 1]:-} ;;
    --root=*) ROOT=${args[i]#--root=} ;;
  esac
done
ROOT=${ROOT%/}
saved=()
if [ -f "$ROOT$OPTIONS_FILE" ]; then
  mapfile -t saved <"$ROOT$OPTIONS_FILE"
fi
set -- "${saved[@]}" "$@"

while [ $# -gt 0 ]; do
  case $1 in
    --*=*) opt=${1%%=*} val=${1#*=}; shift; set -- "$opt" "$val" "$@"; continue ;;
  esac
  case $1 in
    --prefix) need_value "$1" $#; PREFIX=$2; shift ;;
    --data-dir) need_value "$1" $#; DATA_DIR=$2; shift ;;
    --watch-dir) need_value "$1" $#; WATCH_DIR=$2; shift ;;
    --output-dir) need_value "$1" $#; OUTPUT_DIR=$2; shift ;;
    --workers) need_value "$1" $#; WORKERS=$2; shift ;;
    --concurrency) need_value "$1" $#; CONCURRENCY=$2; shift ;;
    --wheelhouse) need_value "$1" $#; WHEELHOUSE=$2; shift ;;
    --python) need_value "$1" $#; PYTHON=$2; shift ;;
    --source) need_value "$1" $#; SOURCE=$2; shift ;;
    --root) need_value "$1" $#; shift ;;
    --beat) BEAT=yes ;;
    --no-beat) BEAT=no ;;
    --watcher) WATCHER=yes ;;
    --no-watcher) WATCHER=no ;;
    --with-flower) FLOWER=yes ;;
    --without-flower) FLOWER=no ;;
    --with-metrics) METRICS=yes ;;
    --without-metrics) METRICS=no ;;
    --no-start) START=no ;;
    --uninstall) UNINSTALL=yes ;;
    --dry-run) DRY=yes ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

if ! [[ $WORKERS =~ ^[0-9]+$ ]] || ((10#$WORKERS > 64)); then
  die "--workers $WORKERS: expected a whole number from 0 to 64"
fi
WORKERS=$((10#$WORKERS))
[[ $CONCURRENCY == auto || $CONCURRENCY =~ ^[1-9][0-9]*$ ]] ||
  die "--concurrency $CONCURRENCY: expected auto or a whole number >= 1"
PREFIX=${PREFIX%/}
[[ $PREFIX == /* ]] || die "--prefix $PREFIX: expected an absolute path"
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "--root $ROOT is not a folder"
  ROOT=$(cd "$ROOT" && pwd)
fi

# Every command that changes the machine goes through run: --dry-run prints it instead.
run() {
  if [ "$DRY" = yes ]; then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

staged() { [ -n "$ROOT" ]; } # --root: files only, nothing of the running machine

# systemctl on the running systemd, or on the unit files under --root (enable and disable only).
sysctl() {
  if staged; then run systemctl --root="$ROOT" "$@"; else run systemctl "$@"; fi
}

check_machine() {
  command -v systemctl >/dev/null || die "systemctl not found: install systemd (apt-get install systemd)"
  staged && return
  [ "$DRY" = yes ] && return
  [ "$(id -u)" = 0 ] || die "run it as root (sudo), or with --root DIR to write the files under DIR only"
  [ -d /run/systemd/system ] ||
    die "systemd is not running on this machine (no /run/systemd/system); --root DIR writes the files only"
}

# A path as systemd unit lines and the settings file take it: absolute, no spaces, quotes, % or $.
check_path() { # LABEL PATH [WHAT TO DO]: LABEL names the path in the message, e.g. DATA_DIR=/var/lib/x
  local label=$1 path=$2 todo=${3:-choose another folder}
  [[ $path == /* ]] || die "$label: expected an absolute path (the services start in DATA_DIR, not here)"
  [[ $path =~ ^[A-Za-z0-9._/+:@-]+$ ]] ||
    die "$label: use letters, digits and . _ - + : @ / only (systemd reads the path as it is)"
  staged && return
  case $path/ in
    /home/* | /root/* | /run/user/*) die "$label: the services cannot see /home, /root or /run/user (ProtectHome=yes): $todo" ;;
    /tmp/* | /var/tmp/*) die "$label: the services have a private, empty /tmp and /var/tmp (PrivateTmp=yes): $todo" ;;
  esac
}

has_transcriber() { [ -x "$PREFIX/bin/transcriber" ] && [ -x "$PREFIX/bin/python" ]; }

install_package() {
  if staged; then
    has_transcriber || die "--root: $PREFIX/bin/transcriber does not exist (--prefix must hold an installed transcriber)"
    return
  fi
  [ -f "$SOURCE/pyproject.toml" ] || die "$SOURCE is not the transcriber source folder (no pyproject.toml): --source DIR"
  if [ ! -x "$PREFIX/bin/python" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
      die "$PYTHON is not Python 3.11 or newer: install python3.11 (and python3-venv), or --python PATH"
    local python
    python=$(readlink -f "$(command -v "$PYTHON")")
    check_path "--python $PYTHON ($python)" "$python" "--python /usr/bin/python3"
    say "virtualenv $PREFIX"
    run "$PYTHON" -m venv "$PREFIX"
  fi
  say "transcriber from $SOURCE into $PREFIX"
  if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE is not a folder"
    run "$PREFIX/bin/pip" install --quiet --no-index --find-links "$WHEELHOUSE" --upgrade "$SOURCE"
  else
    run "$PREFIX/bin/pip" install --quiet --upgrade pip
    run "$PREFIX/bin/pip" install --quiet --upgrade "$SOURCE"
  fi
}

# DATA_DIR, WATCH_DIR, OUTPUT_DIR, WHISPER_MODEL_DIR and FLOWER_BASIC_AUTH (set or not) as transcriber reads
# them from the settings file: its own parser, and its own check of every value.
read_settings() {
  env -i PATH=/usr/bin:/bin "$PREFIX/bin/python" - "$1" <<'EOF'
import sys

from dotenv import dotenv_values

from transcriber.errors import ConfigError
from transcriber.settings import load_settings

path = sys.argv[1]
try:
    settings = load_settings(path)
except ConfigError as exc:
    sys.exit(f"install.sh: {path}: {exc}")
raw = {key.upper(): value for key, value in dotenv_values(path).items()}  # as written: relative or not
for key in ("DATA_DIR", "WATCH_DIR", "OUTPUT_DIR", "WHISPER_MODEL_DIR"):
    print(f"{key}={(raw.get(key) or '').strip()}")
print(f"FLOWER_AUTH={'yes' if settings.flower_basic_auth.get_secret_value() else 'no'}")
EOF
}

# The folders: from the settings file when there is one (it is what the services read), else the options.
choose_paths() {
  local file_data='' file_watch='' file_output='' line
  MODEL_DIR='' FLOWER_AUTH=unknown NEW_ENV=yes
  if [ -f "$ROOT$ENV_FILE" ]; then
    NEW_ENV=no
    if has_transcriber; then
      local out
      out=$(read_settings "$ROOT$ENV_FILE") || exit 1
      while IFS= read -r line; do
        case $line in
          DATA_DIR=*) file_data=${line#*=} ;;
          WATCH_DIR=*) file_watch=${line#*=} ;;
          OUTPUT_DIR=*) file_output=${line#*=} ;;
          WHISPER_MODEL_DIR=*) MODEL_DIR=${line#*=} ;;
          FLOWER_AUTH=*) FLOWER_AUTH=${line#*=} ;;
        esac
      done <<<"$out"
      [ -n "$file_data" ] || die "$ENV_FILE sets no DATA_DIR: add DATA_DIR=/var/lib/transcriber (an absolute path)"
      [ -n "$file_watch" ] || die "$ENV_FILE sets no WATCH_DIR: add an absolute path"
      [ -n "$file_output" ] || die "$ENV_FILE sets no OUTPUT_DIR: add an absolute path"
      agree DATA_DIR --data-dir "$DATA_DIR" "$file_data"
      agree WATCH_DIR --watch-dir "$WATCH_DIR" "$file_watch"
      agree OUTPUT_DIR --output-dir "$OUTPUT_DIR" "$file_output"
      DATA_DIR=$file_data WATCH_DIR=$file_watch OUTPUT_DIR=$file_output
    else
      say "(dry run: $PREFIX has no transcriber yet; the folders are read from $ENV_FILE once it has)"
    fi
  fi
  DATA_DIR=${DATA_DIR:-/var/lib/transcriber}
  WATCH_DIR=${WATCH_DIR:-/srv/transcriber/inbox}
  OUTPUT_DIR=${OUTPUT_DIR:-/srv/transcriber/transcripts}
  DATA_DIR=${DATA_DIR%/} WATCH_DIR=${WATCH_DIR%/} OUTPUT_DIR=${OUTPUT_DIR%/}
  [ "$NEW_ENV" = yes ] && MODEL_DIR=$DATA_DIR/models
  MODEL_DIR=${MODEL_DIR%/}
  check_path "DATA_DIR=$DATA_DIR" "$DATA_DIR"
  check_path "WATCH_DIR=$WATCH_DIR" "$WATCH_DIR"
  check_path "OUTPUT_DIR=$OUTPUT_DIR" "$OUTPUT_DIR"
  [ -z "$MODEL_DIR" ] || check_path "WHISPER_MODEL_DIR=$MODEL_DIR" "$MODEL_DIR"
}

agree() { # NAME OPTION GIVEN IN_FILE
  [ -z "$3" ] || [ "${3%/}" = "${4%/}" ] ||
    die "$2 $3, but $ENV_FILE has $1=$4: edit the file (it is what the services read), then run this again"
}

create_user() {
  staged && return
  getent passwd "$SERVICE_USER" >/dev/null && return
  say "system user $SERVICE_USER (home $DATA_DIR, no login)"
  run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
    --shell "$(command -v nologin || echo /usr/sbin/nologin)" "$SERVICE_USER"
}

write_env_file() {
  run install -d -m 0755 "$ROOT$ETC"
  local owner=()
  staged || owner=(-o root -g "$SERVICE_USER")
  if [ "$NEW_ENV" = no ]; then
    say "keeping $ENV_FILE (mode 0640, root:$SERVICE_USER)"
    run chmod 0640 "$ROOT$ENV_FILE"
    staged || run chown "root:$SERVICE_USER" "$ENV_FILE"
    return
  fi
  [ -f "$SOURCE/.env.example" ] || die "$SOURCE/.env.example is missing: --source DIR"
  say "$ENV_FILE from .env.example: set DATABASE_URL and CELERY_BROKER_URL in it"
  local tmp
  tmp=$(mktemp)
  sed -e "s|^DATA_DIR=.*|DATA_DIR=$DATA_DIR|" -e "s|^WATCH_DIR=.*|WATCH_DIR=$WATCH_DIR|" \
    -e "s|^OUTPUT_DIR=.*|OUTPUT_DIR=$OUTPUT_DIR|" -e "s|^WHISPER_MODEL_DIR=.*|WHISPER_MODEL_DIR=$MODEL_DIR|" \
    "$SOURCE/.env.example" >"$tmp"
  run install -m 0640 "${owner[@]}" "$tmp" "$ROOT$ENV_FILE"
  rm -f "$tmp"
}

make_folders() {
  local dir owner=()
  staged || owner=(-o "$SERVICE_USER" -g "$SERVICE_USER")
  for dir in "$DATA_DIR" "$MODEL_DIR" "$WATCH_DIR" "$OUTPUT_DIR"; do
    [ -n "$dir" ] || continue
    if [ -d "$ROOT$dir" ]; then
      continue # maybe a share, or full of files: left as it is (check_service_user_can)
    fi
    say "folder $dir"
    # WATCH_DIR: members of the group drop recordings in it; setgid, so the files they drop belong to the group.
    run install -d -m "$([ "$dir" = "$WATCH_DIR" ] && echo 2770 || echo 0750)" "${owner[@]}" "$ROOT$dir"
  done
}

# What the services will need of this machine, checked as the service user.
check_service_user_can() {
  staged && return
  [ "$DRY" = yes ] && return
  local python todo="remove $PREFIX and run this again with --python /usr/bin/python3"
  python=$(readlink -f "$PREFIX/bin/python")
  check_path "$PREFIX/bin/python ($python)" "$python" "$todo" # a virtualenv of a pyenv Python, say
  runuser -u "$SERVICE_USER" -- "$PREFIX/bin/python" -c 'import transcriber' 2>/dev/null ||
    die "the user $SERVICE_USER cannot run $PREFIX/bin/python ($python): $todo"
  can DATA_DIR "$DATA_DIR" -w
  can WATCH_DIR "$WATCH_DIR" -r
  can OUTPUT_DIR "$OUTPUT_DIR" -w
}

can() { # NAME DIR TEST: the service user can read (-r) or write (-w) DIR
  runuser -u "$SERVICE_USER" -- test "$3" "$2" -a -x "$2" ||
    die "$1=$2: the user $SERVICE_USER cannot $([ "$3" = -w ] && echo write || echo read) it (chown $SERVICE_USER: it, or mount it so)"
}

render() { # UNIT FILE -> stdout, the @...@ filled in
  local args=() extra=''
  [ "$CONCURRENCY" = auto ] || args=(--concurrency="$CONCURRENCY")
  case $MODEL_DIR in
    '' | "$DATA_DIR" | "$DATA_DIR"/*) ;;
    *) extra=" $MODEL_DIR" ;; # models downloaded or joined outside DATA_DIR: the worker must write there
  esac
  sed -e "s|^ReadWritePaths=@DATA_DIR@ @OUTPUT_DIR@\$|&$extra|" \
    -e "s|@PREFIX@|$PREFIX|g" -e "s|@ENV_FILE@|$ENV_FILE|g" -e "s|@DATA_DIR@|$DATA_DIR|g" \
    -e "s|@WATCH_DIR@|$WATCH_DIR|g" -e "s|@OUTPUT_DIR@|$OUTPUT_DIR|g" -e "s|@WORKER_ARGS@|${args[*]:-}|g" "$1"
}

install_units() {
  local unit tmp
  tmp=$(mktemp -d)
  for unit in "${UNITS[@]}"; do
    render "$HERE/$unit" >"$tmp/$unit"
    if grep -n '@[A-Z_]*@' "$tmp/$unit" >&2; then
      die "$unit: a placeholder above was not filled in"
    fi
  done
  say "units in $UNIT_DIR: ${UNITS[*]}"
  run install -d -m 0755 "$ROOT$UNIT_DIR"
  for unit in "${UNITS[@]}"; do
    run install -m 0644 "$tmp/$unit" "$ROOT$UNIT_DIR/$unit"
  done
  rm -rf "$tmp"
  install_wrapper
  staged || sysctl daemon-reload
}

# /usr/local/bin/transcriber: the operator commands with the services' settings, as the service user.
install_wrapper() {
  if [ -e "$ROOT$WRAPPER" ] && ! grep -qF "$WRAPPER_MARK" "$ROOT$WRAPPER"; then
    say "leaving $WRAPPER alone: it is not ours (run $PREFIX/bin/transcriber with TRANSCRIBER_ENV_FILE=$ENV_FILE)"
    return
  fi
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
#!/bin/sh
$WRAPPER_MARK
# transcriber with the settings of the services ($ENV_FILE); as root it runs as the user $SERVICE_USER,
# so the files it writes (the model cache, exports) belong to the services.
if [ "\$(id -u)" = 0 ]; then
  exec runuser -u $SERVICE_USER -- env TRANSCRIBER_ENV_FILE=$ENV_FILE HOME=$DATA_DIR XDG_CACHE_HOME=$DATA_DIR/.cache $PREFIX/bin/transcriber "\$@"
fi
TRANSCRIBER_ENV_FILE=$ENV_FILE exec $PREFIX/bin/transcriber "\$@"
EOF
  run install -d -m 0755 "$ROOT${WRAPPER%/*}"
  run install -m 0755 "$tmp" "$ROOT$WRAPPER"
  rm -f "$tmp"
}

save_options() {
  local tmp
  tmp=$(mktemp)
  {
    printf '%s\n' --prefix "$PREFIX" --workers "$WORKERS" --concurrency "$CONCURRENCY"
    [ "$BEAT" = yes ] && echo --beat || echo --no-beat
    [ "$WATCHER" = yes ] && echo --watcher || echo --no-watcher
    [ "$FLOWER" = yes ] && echo --with-flower || echo --without-flower
    [ "$METRICS" = yes ] && echo --with-metrics || echo --without-metrics
  } >"$tmp"
  run install -m 0644 "$tmp" "$ROOT$OPTIONS_FILE"
  rm -f "$tmp"
}

# The worker instances enabled now (wanted by transcriber.target): ENABLED_WORKERS.
enabled_workers() {
  local link name
  ENABLED_WORKERS=()
  for link in "$ROOT$UNIT_DIR"/transcriber.target.wants/transcriber-worker@*.service; do
    [ -L "$link" ] || continue
    name=${link##*/}
    ENABLED_WORKERS+=("$name")
  done
}

stop_services() {
  staged && return
  [ -f "$UNIT_DIR/transcriber.target" ] || return 0
  say "stopping the services (a warm stop: running calls go back to the queue)"
  sysctl stop transcriber.target
}

enable_services() {
  local wanted=(transcriber.target) unwanted=() i name inst
  for ((i = 1; i <= WORKERS; i++)); do wanted+=("transcriber-worker@$i.service"); done
  enabled_workers
  for name in "${ENABLED_WORKERS[@]}"; do
    inst=${name#transcriber-worker@}
    inst=${inst%.service}
    if [[ $inst =~ ^[0-9]+$ ]] && ((inst > WORKERS)); then unwanted+=("$name"); fi
  done
  pick "$BEAT" transcriber-beat.service
  pick "$WATCHER" transcriber-watch.service
  pick "$FLOWER" transcriber-flower.service
  pick "$METRICS" transcriber-metrics.service
  if [ ${#unwanted[@]} -gt 0 ]; then
    say "disabling ${unwanted[*]}"
    if staged; then sysctl disable "${unwanted[@]}"; else sysctl disable --now "${unwanted[@]}"; fi
  fi
  say "enabling ${wanted[*]}"
  sysctl enable "${wanted[@]}"
  if ! staged && [ "$START" = yes ]; then
    say "starting them"
    sysctl start "${wanted[@]}"
  fi
}

pick() { # yes|no UNIT: into wanted, or into unwanted if it is enabled now (of enable_services)
  if [ "$1" = yes ]; then
    wanted+=("$2")
  elif [ -L "$ROOT$UNIT_DIR/transcriber.target.wants/$2" ]; then
    unwanted+=("$2")
  fi
}

migrate() {
  staged && return
  say "database schema (transcriber db upgrade, as $SERVICE_USER)"
  run runuser -u "$SERVICE_USER" -- env TRANSCRIBER_ENV_FILE="$ENV_FILE" HOME="$DATA_DIR" \
    XDG_CACHE_HOME="$DATA_DIR/.cache" "$PREFIX/bin/transcriber" db upgrade
}

uninstall() {
  check_machine
  enabled_workers
  local units=(transcriber.target transcriber-beat.service transcriber-watch.service transcriber-flower.service
    transcriber-metrics.service "${ENABLED_WORKERS[@]}") unit
  if [ -f "$ROOT$UNIT_DIR/transcriber.target" ]; then
    say "stopping and disabling ${units[*]}"
    if staged; then sysctl disable "${units[@]}"; else sysctl disable --now "${units[@]}"; fi
  fi
  for unit in "${UNITS[@]}"; do
    [ -e "$ROOT$UNIT_DIR/$unit" ] && run rm -f "$ROOT$UNIT_DIR/$unit"
  done
  if [ -e "$ROOT$WRAPPER" ] && grep -qF "$WRAPPER_MARK" "$ROOT$WRAPPER"; then run rm -f "$ROOT$WRAPPER"; fi
  staged || sysctl daemon-reload
  say "removed the units and $WRAPPER. Kept: $ETC (settings), $PREFIX (virtualenv), the folders named in"
  say "$ENV_FILE (recordings, transcripts, DATA_DIR) and the user $SERVICE_USER. Remove them by hand if you mean to:"
  say "  rm -r $ETC $PREFIX; userdel $SERVICE_USER"
}

main() {
  if [ "$UNINSTALL" = yes ]; then
    uninstall
    return
  fi
  check_machine
  check_path "--prefix $PREFIX" "$PREFIX"
  stop_services
  install_package
  choose_paths
  create_user
  write_env_file
  make_folders
  check_service_user_can
  install_units
  save_options
  if grep -q '^[^#]*CHANGE_ME' "$ROOT$ENV_FILE" 2>/dev/null || { [ "$DRY" = yes ] && [ "$NEW_ENV" = yes ]; }; then
    say "next: DATABASE_URL in $ENV_FILE still says CHANGE_ME: set it and CELERY_BROKER_URL (docs/linux.md),"
    say "then run $0 again: it migrates the database, enables the services and starts them"
    return
  fi
  [ "$FLOWER" = yes ] && [ "$FLOWER_AUTH" = no ] &&
    say "note: FLOWER_BASIC_AUTH is empty in $ENV_FILE: transcriber-flower refuses to start without it"
  migrate
  enable_services
  say "done. transcriber doctor checks the settings; journalctl -u 'transcriber-*' shows the logs"
}

main
