"""The one compiled part: the fitter's inner loop (bridge/_lmcore.c). Optional: when no C compiler is
found the build goes on without it and bridge.fit runs the same loop in numpy."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("bridge._lmcore", ["bridge/_lmcore.c"], optional=True)])
