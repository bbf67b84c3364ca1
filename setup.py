from setuptools import find_packages, setup

with open("requirements.txt") as f:
    requirements = [line.strip() for line in f if line.strip() and not line.startswith("#")]

setup(
    name="semipose",
    version="0.1.0",
    description="Semi-supervised 2D human pose estimation: PoseCons and PoseDual",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    # The joint-set descriptions (COCO, MPII, AIC, union) are read at import time.
    package_data={"semipose.data": ["metas/*.yaml"]},
    python_requires=">=3.9",
    install_requires=requirements,
    # ONNX export and its onnxruntime check (pose_estimation/export.py)
    extras_require={"export": ["onnx>=1.14", "onnxruntime>=1.16"]},
)
