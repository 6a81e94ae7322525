"""What the tools share, by concern; nothing in vitdense/models, vitdense/checkpoint, vitdense/engine or
vitdense/datasets imports this package.

* :mod:`~vitdense.runtime.config`: the one config loader (:func:`load_config`) and the one model-from-config builder
  (:func:`build_model`);
* :mod:`~vitdense.runtime.data_checks`: data and work-dir checks before a run;
* :mod:`~vitdense.runtime.errors`: one-line errors for what a user can fix (:func:`describe_error`, :func:`run_tool`);
* :mod:`~vitdense.runtime.launch`: launcher arguments, runners, CPU distributed set-up, sharding and precision;
* :mod:`~vitdense.runtime.resume`: which checkpoint ``--resume`` continues from.
"""
