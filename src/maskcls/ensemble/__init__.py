"""Ensembles of runs: voting, stacking, per-class threshold scales, pseudo-labels, uncertainty and
person-consistent prediction.

Every piece reads and writes the same tables as a run (OOF and test probabilities keyed by image id),
and every fitted piece is scored out of sample, on persons it never saw. Import the module you need
(``maskcls.ensemble.build``, ``.voting``, ``.stacking``, ...): the package itself loads nothing, so the ONNX
runtime's use of ``person_consistency`` does not pull in scikit-learn.
"""
