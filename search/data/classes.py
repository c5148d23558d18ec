"""Class tables shared by the loaders and the demo generator."""

from __future__ import annotations

# MedMNIST v2 BloodMNIST label order (label 3 is "immature granulocytes", shortened to "ig").
BLOODMNIST_CLASSES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)

# Images per class in the full PBC dataset (17,092 images) that BloodMNIST is built from; the
# demo data set draws its class sizes in these proportions.
PBC_CLASS_COUNTS: tuple[int, ...] = (1218, 3117, 1551, 2895, 1214, 1420, 3329, 2348)
