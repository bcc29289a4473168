"""A scripted chat workload logged through the real SDK (run as a separate process by
test_e2e.py: ``python workload.py <OTLP endpoint> <protocol>``).

Figures known in advance:

* alice: session e2e-s1 with 3 tasks ("hi", "weather?", "bye"; feedback success on the
  2nd, failure on the 3rd) and session e2e-s2 with 1 task that raises (status error);
* bob: session e2e-s3 with 2 tasks, both flagged success (the 2nd one's feedback is sent
  *before* the task itself);
* carol: one task outside any session.
"""

from __future__ import annotations

import sys
import time

import phospho_otel as phospho


def main(endpoint: str, protocol: str) -> int:
    phospho.init(endpoint=endpoint, protocol=protocol, service_name="e2e-chat")
    with phospho.session("e2e-s1", user_id="alice"):
        phospho.log("hi", "hello", task_id="e2e-a1")
        time.sleep(0.01)
        phospho.log("weather?", "sunny", task_id="e2e-a2", metadata={"model": "m1"})
        time.sleep(0.01)
        phospho.log("bye", "ciao", task_id="e2e-a3")
    phospho.user_feedback("e2e-a2", "success")
    phospho.user_feedback("e2e-a3", "failure", notes="too short")
    with phospho.session("e2e-s2", user_id="alice"):
        try:
            with phospho.task(input="crash?", task_id="e2e-a4"):
                raise RuntimeError("model down")
        except RuntimeError:
            pass
    phospho.user_feedback("e2e-b2", "success", source="owner")  # before its task
    with phospho.session("e2e-s3", user_id="bob"):
        phospho.log("hello", "hi bob", task_id="e2e-b1")
        time.sleep(0.01)
        phospho.log("thanks", "you're welcome", task_id="e2e-b2")
    phospho.user_feedback("e2e-b1", "success")
    phospho.log("summarize", "done", task_id="e2e-c1", user_id="carol")
    ok = phospho.flush(20)
    phospho.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
