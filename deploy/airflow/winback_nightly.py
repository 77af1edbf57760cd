"""Airflow DAG: the nightly win-back job.

validate -> nightly -> record. Each task runs the winback CLI and maps its
exit code (the README's table) to what Airflow should do:

    0        success
    1, 5     retry (the machine, or another winback job holds the output
             directory)
    2, 3     fail without retrying (config or data: a person must look)
    4        fail without retrying and alert: the data is stale, the run
             was refused and runs/latest still holds the previous night

Install Airflow (`pip install apache-airflow`), put this file in the DAGs
folder and set the Airflow Variables `winback_bin` and `winback_config`.
"""

import subprocess
from datetime import datetime, timedelta

RETRY = {1, 5}
NO_RETRY = {2, 3, 4}
MEANING = {
    1: "the machine or an internal error",
    2: "the config or the command line",
    3: "the data broke the contract or cannot support the run",
    4: "refused to publish: the data is stale (runs/latest unchanged)",
    5: "another winback job holds the output directory",
}


def outcome(code):
    """What Airflow does with a winback exit code: ok, retry or fail."""
    if code == 0:
        return "ok"
    if code in RETRY:
        return "retry"
    return "fail"


def run_winback(*args):
    """Runs winback; raises as the exit code says."""
    from airflow.exceptions import AirflowFailException
    from airflow.models import Variable

    config = Variable.get("winback_config", "/etc/winback/operator.toml")
    cmd = [Variable.get("winback_bin", "winback"),
           *(config if a == "{config}" else a for a in args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(done.stdout)
    print(done.stderr)
    what = outcome(done.returncode)
    if what == "ok":
        return done.stdout.strip().splitlines()[-1:] or [""]
    message = f"winback {' '.join(args)} exited {done.returncode}: {MEANING.get(done.returncode, 'unknown')}"
    if what == "retry":
        raise RuntimeError(message)  # Airflow retries it
    raise AirflowFailException(message)  # no retry


try:
    from airflow import DAG
    from airflow.operators.python import PythonOperator
except ImportError:  # imported without Airflow (the tests check `outcome`)
    DAG = None

if DAG is not None:
    with DAG(
        dag_id="winback_nightly",
        description="winback: validate, nightly (score, simulate, report), record",
        schedule="30 2 * * *",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 3, "retry_delay": timedelta(minutes=20)},
        tags=["winback"],
    ) as dag:
        validate = PythonOperator(task_id="validate", python_callable=run_winback,
                                  op_args=["-q", "validate", "--config", "{config}"])
        nightly = PythonOperator(task_id="nightly", python_callable=run_winback,
                                 op_args=["-q", "nightly", "--config", "{config}", "--wait"])
        record = PythonOperator(task_id="record", python_callable=run_winback,
                                op_args=["runs", "--config", "{config}", "show", "latest"])
        validate >> nightly >> record
