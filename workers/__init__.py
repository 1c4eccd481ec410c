"""What runs inside ``rq worker``: evoq's trial entry, its msgpack serializer and job class.

Start a worker with::

    rq worker evoq --url "$REDIS_URL" \
        --serializer workers.serializer.MsgpackSerializer \
        --job-class workers.job.EvoqJob \
        --worker-class rq.Worker --job-monitoring-interval 5

with ``EVOQ_ALLOW`` naming the trial functions this worker may run (``evoq worker`` is the
short form). Nothing here touches the population: a worker runs one trial and appends its
outcome to the experiment's event stream.
"""
