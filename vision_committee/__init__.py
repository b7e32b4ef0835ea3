"""Committee distillation for image classifiers, on the shared core in ``recsys_committee.committee``.

The vision side supplies only data (``data.py``), models (``models.py``), teacher adapters
(``teachers.py``) and the run/CLI glue; the question/answer module, gate, losses, baselines and
export are the core's (``tests/vision/test_vision_no_core_copy.py`` checks nothing is redefined here).
"""
