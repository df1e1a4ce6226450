"""Kubernetes pieces of the SparkApplication backend, one concern per module.

* ``naming``  - deterministic app names and label values;
* ``runinfo`` - who is submitting (Prefect flow run, task run, attempt);
* ``render``  - SparkJob -> SparkApplication manifest (+ spec hash);
* ``client``  - API client from credentials, SparkApplication calls, typed API errors;
* ``states``  - the operator's application states and what they mean for a job;
* ``watch``   - follow one app with the watch API (re-list on 410, reconnect on drops);
* ``logs``    - stream the driver pod's log, following a new pod after a rerun;
* ``pods``    - what the driver pod says: started yet, why not, its exit code;
* ``report``  - the app's state timeline; ``artifacts`` publishes it to Prefect.

Nothing here imports Prefect at module import time.
"""
