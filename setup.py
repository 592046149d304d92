from setuptools import setup

setup(
    name="eventprop",
    version="0.1.0",
    description="EventProp training of spiking neural networks (exact gradients) on numba: "
                "Yin-Yang, MNIST, SHD, SSC, DVS gesture, sequential MNIST",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    py_modules=["models", "engine_cpu", "engine_cuda", "losses", "losses_cuda", "network",
                "spike_data", "simulation", "utils", "yinyang_data", "simulator_yinyang",
                "shd_data", "augmentations", "checkpoints", "experiment", "parameters",
                "command_line", "simulator_SHD", "sweep", "figures", "dvs_data",
                "simulator_DVS_gesture", "mnist_data", "simulator_MNIST", "simulator_SMNIST"],
    install_requires=["numpy>=1.24", "scipy>=1.10", "numba>=0.58", "matplotlib>=3.6",
                      "tables>=3.8", "tqdm>=4.60", "tonic>=1.4", "mnist>=0.2.2",
                      "dask[distributed]>=2023.1", "pyyaml>=6"],
    extras_require={"test": ["pytest>=7"], "cluster": ["dask-jobqueue>=0.8"],
                    "gpu": ["numba-cuda[cu12]", "numpy<2.5"]},
)
