"""kombu's Redis transport with one fix, so a Celery worker outlives losing Redis.

With celery 5.7 / kombu 5.7 a worker exits (`Unrecoverable error: AttributeError("'NoneType' object
has no attribute 'hostname'")`) when Redis goes away while it holds an unacknowledged message (all
keyward tasks are acks_late) and its consumer is blocked in BRPOP:

1. `Consumer.on_connection_error_after_connected` calls `connection.collect()`, then
   `connection.close()` on the same connection (celery PR #10242, in 5.7).
2. `collect()` closes the default channel: the dead socket cuts that close short in `_brpop_read`,
   before the channel is marked closed; `collect()` then detaches the transport from the connection
   (`transport.client = None`) but leaves the channel in place.
3. `close()` closes that channel again. Now it gets as far as requeueing the unacknowledged
   messages, which needs a fresh connection pool, whose parameters are read from
   `transport.client` (None): AttributeError. The cleanup only ignores connection errors, so the
   AttributeError stops the worker. Acknowledging a task that finishes after the reconnect goes the
   same way (the message still belongs to the old channel).

Here a channel whose connection has been detached raises redis's ConnectionError instead, the error
every cleanup and acknowledgement path already expects: the worker logs it, reconnects and goes on.
The messages it could not requeue or acknowledge stay in Redis's unacked set and are delivered again
after the visibility timeout (if Redis kept them); keyward's beat sweeps redo the work sooner.
Used through the `CELERY_BROKER_TRANSPORT` setting. Drop it once kombu stops reading a detached
channel's connection parameters (tests/faults/test_celery_worker.py shows whether it still must).
"""

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("this broker channel's connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
