# Sourced by the benchmark scripts that run an nginx of their own:
#   nginx_conf WORK PORT 'location ... { ... }'   prints a config serving on 127.0.0.1:PORT,
#   with its pid, log and temp files under WORK/nginx (which must exist, with WORK/nginx/tmp).
nginx_conf() {
  local work=$1 port=$2 locations=$3
  cat <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  sendfile on; tcp_nopush on;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$port; $locations }
}
CONF
}
