"""The real benchmarks, read in their published formats from ``--data-root`` / ``$CPCBENCH_DATA`` (SMPL/MANO from
``$CPCBENCH_MODELS``): 3DPW, EMDB, Human3.6M (protocols 1 and 2), FreiHAND, HO3D and an ImageFolder
classification task. Importing this package registers them in ``core.registry.TASKS``; nothing is read until a
task builds a dataset.
"""

from tasks.real import emdb, freihand, h36m, ho3d, imagefolder, pw3d  # noqa: F401  (registers the tasks)
