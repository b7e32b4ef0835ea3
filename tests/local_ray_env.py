"""The environment of the tests' one local Ray (``tests/conftest.py`` ``local_ray``), in a module
of its own: the job-submit test sends the same settings with its job, and a test module cannot
import ``conftest`` by name (each test package has one).
"""

# Settings every local Ray test runs under: gloo and Ray on loopback, one thread per worker, quiet
# FBGEMM, no Hugging Face downloads; and Ray Train's cloud-only extras off (the node-preemption
# watcher actor, the metrics push): each is one more process to start per worker group on a small
# machine, and no test asks for either. The controller polls its workers every 0.25 s, not 2 s:
# a two-worker run of a few seconds otherwise idles through several 2-s polls (each report, the
# end, a killed worker's detection), and the kill drill waits three polls before it kills.
RAY_TEST_ENV = {
    "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "TORCH_CPP_LOG_LEVEL": "ERROR", "HF_HUB_OFFLINE": "1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    # no token auth on this throwaway loopback head: a token left in ~/.ray by any earlier Ray
    # would otherwise switch it to token mode, and `ray job submit` (tests/train/test_ray_entry.py)
    # would be refused
    "RAY_AUTH_MODE": "disabled",
}
