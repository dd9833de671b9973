"""The one compiled part: the fitter's inner loop and cold placement (bridge/_lmcore.c). Optional: when
no C compiler is found the build goes on without it and bridge.fit runs the same steps in numpy."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("bridge._lmcore", ["bridge/_lmcore.c"], optional=True)])
