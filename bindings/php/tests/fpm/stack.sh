# nginx + php-fpm on loopback, in a temp dir, as the current user. Source, do not run.
#   stack_start EXT_SO WWW_DIR WORKERS MAX_REQUESTS [-d evlog.x=y ...]  -> sets STACK_DIR, STACK_PORT
#   stack_stop                                                          -> graceful (SIGQUIT), waits
# STACK_POOL_EXTRA: more lines for the [www] pool (e.g. php_admin_value[evlog.mode] = forward).
# STACK_FPM_WRAP: a command php-fpm runs under (e.g. valgrind's, for fpm_callgrind.sh); words split.
# Needs: nginx, php-fpm8.2, python3 (free port).

stack_wait() { # stack_wait SECONDS CMD...: polls CMD until it succeeds or the deadline passes
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.05
  done
}

stack_start() {
  local ext=$1 www=$2 workers=$3 max_requests=$4; shift 4
  STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/evlog-fpm.XXXXXX")
  STACK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$STACK_DIR/data" "$STACK_DIR/stats" "$STACK_DIR/nginx"
  local root_opts=() nginx_user=""
  if [ "$(id -u)" -eq 0 ]; then root_opts=(-R); nginx_user="user root;"; fi
  cat > "$STACK_DIR/php-fpm.conf" <<CONF
[global]
error_log = $STACK_DIR/fpm.log
pid = $STACK_DIR/fpm.pid
log_level = notice
process_control_timeout = 30s

[www]
listen = $STACK_DIR/fpm.sock
pm = static
pm.max_children = $workers
pm.max_requests = $max_requests
catch_workers_output = yes
decorate_workers_output = no
${STACK_POOL_EXTRA:-}
CONF
  cat > "$STACK_DIR/nginx.conf" <<CONF
$nginx_user
daemon off;
worker_processes 1;
pid $STACK_DIR/nginx.pid;
error_log $STACK_DIR/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $STACK_DIR/nginx/body;
  fastcgi_temp_path $STACK_DIR/nginx/fastcgi;
  proxy_temp_path $STACK_DIR/nginx/proxy;
  uwsgi_temp_path $STACK_DIR/nginx/uwsgi;
  scgi_temp_path $STACK_DIR/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$STACK_PORT;
    location = /204 { return 204; }
    location ~ ^/[a-z]+\.php\$ {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $www\$fastcgi_script_name;
      fastcgi_pass unix:$STACK_DIR/fpm.sock;
    }
  }
}
CONF
  # shellcheck disable=SC2086 # STACK_FPM_WRAP is a command and its words
  ${STACK_FPM_WRAP:-} php-fpm8.2 -n -F "${root_opts[@]}" -y "$STACK_DIR/php-fpm.conf" -d "extension=$ext" \
    -d "evlog.file_dir=$STACK_DIR/data" "$@" > "$STACK_DIR/fpm.stdout" 2>&1 &
  STACK_FPM_PID=$!
  nginx -c "$STACK_DIR/nginx.conf" -e "$STACK_DIR/nginx-error.log" > "$STACK_DIR/nginx.stdout" 2>&1 &
  STACK_NGINX_PID=$!
  stack_wait 20 test -S "$STACK_DIR/fpm.sock" || { cat "$STACK_DIR/fpm.log" "$STACK_DIR/fpm.stdout" >&2; return 1; }
  stack_wait 20 curl -fsS -o /dev/null "http://127.0.0.1:$STACK_PORT/204" || { cat "$STACK_DIR/nginx-error.log" >&2; return 1; }
}

# stack_stop: SIGQUIT to both (graceful: fpm workers finish, run MSHUTDOWN, exit), waits.
stack_stop() {
  local ok=0
  if [ -n "${STACK_FPM_PID:-}" ] && kill -0 "$STACK_FPM_PID" 2>/dev/null; then
    kill -QUIT "$STACK_FPM_PID"
    stack_wait 60 bash -c "! kill -0 $STACK_FPM_PID 2>/dev/null" || { echo "php-fpm did not stop in 60s" >&2; kill -KILL "$STACK_FPM_PID"; ok=1; }
    wait "$STACK_FPM_PID" 2>/dev/null || true
  fi
  if [ -n "${STACK_NGINX_PID:-}" ] && kill -0 "$STACK_NGINX_PID" 2>/dev/null; then
    kill -QUIT "$STACK_NGINX_PID"
    stack_wait 30 bash -c "! kill -0 $STACK_NGINX_PID 2>/dev/null" || kill -KILL "$STACK_NGINX_PID"
    wait "$STACK_NGINX_PID" 2>/dev/null || true
  fi
  STACK_FPM_PID="" STACK_NGINX_PID=""
  return $ok
}
