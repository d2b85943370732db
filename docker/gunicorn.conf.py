"""gunicorn settings for the keyward image: `gunicorn -c docker/gunicorn.conf.py keyward.wsgi`."""

bind = "0.0.0.0:8000"
workers = 3
# Threaded workers: a request waiting on an outside server (OIDC discovery, a JWKS fetch, a DNS
# check, bounded by their time budgets) holds one of 8 threads, not a whole worker process as with
# gunicorn's default sync workers. Each thread may hold a database connection: size PostgreSQL's
# max_connections for workers x threads per web container.
worker_class = "gthread"
threads = 8
accesslog = "-"
# The path without its query string and no Referer: an export download link's signature (and any
# token a client puts in a URL) must never reach a log line.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s" %({x-request-id}o)s'
# A header may carry a token of up to 16 KiB (keyward.jose.verify.MAX_TOKEN_BYTES: end-user, delegation
# and attestation tokens); gunicorn's default field limit (8190 bytes) would refuse it with an HTML 431
# before keyward could answer. Request lines (path and query) get gunicorn's maximum.
limit_request_field_size = 20 * 1024
limit_request_line = 8190
