#!/usr/bin/env bash
# build one notebook: py -> ipynb, execute in place, sync (dev helper, not part of CI)
set -e
export PATH=/work/venv/bin:$PATH GRADPRUNE_DATA=${GRADPRUNE_DATA-/work/shared/data} MPLBACKEND=module://matplotlib_inline.backend_inline
py=$1; nb=${py%.py}.ipynb
jupytext --quiet --to ipynb "$py"
/usr/bin/time -f "wall %e s, peak RSS %M KB" jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=300 "$nb" 2>&1 | grep -v "^\[NbConvertApp\]"
jupytext --quiet --sync "$nb"
