# wsss — every target works alone on a fresh machine with nothing but Python installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WSSS := $(BIN)/wsss

# Demo pipeline knobs (override on the command line: make demo DEMO_OUT=runs/other).
DEMO_OUT ?= runs/demo
# Full reproduction on PASCAL VOC 2012 + SBD.
VOC ?=
SBD ?=
ALL_OUT ?= runs/voc
# COCO 2014 (train2014/, val2014/, annotations/): converted in place, then the coco recipe.
COCO ?=
COCO_OUT ?= runs/coco

.PHONY: install test test-fast lint demo all all-coco bench bench-gpu ablation quality clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check wsss cli tests benchmarks experiments
	$(BIN)/ruff format --check wsss cli tests benchmarks experiments

demo: install
	$(WSSS) pipeline demo --out $(DEMO_OUT)

# The demo plus the random-walk path (docs/random_walk.md); after `make demo` only the new
# stages run.
.PHONY: demo-rw
demo-rw: install
	$(WSSS) pipeline demo --random-walk --out $(DEMO_OUT)

all: install
	@test -n "$(VOC)" || (echo "usage: make all VOC=/path/VOCdevkit/VOC2012 SBD=/path/benchmark_RELEASE/dataset" && exit 2)
	$(WSSS) pipeline voc --voc $(VOC) $(if $(SBD),--sbd $(SBD),) --out $(ALL_OUT)

all-coco: install
	@test -n "$(COCO)" || (echo "usage: make all-coco COCO=/path/coco2014" && exit 2)
	$(WSSS) prepare-coco --coco $(COCO)
	$(WSSS) pipeline run --data $(COCO) --recipe coco --out $(COCO_OUT)

bench: install
	$(BIN)/python benchmarks/bench.py --out BENCHMARKS.md --json runs/bench/bench.json

# Each stage's speed on a GPU against its own network's (about 3 minutes); without a GPU it
# says so and does nothing.
bench-gpu: install
	$(BIN)/python benchmarks/bench_gpu.py --out BENCHMARKS.md --json runs/bench/bench_gpu.json

# The Puzzle-CAM loss ablation on the demo data (README); experiments/ sits outside the package.
ablation: install
	$(BIN)/python experiments/ablation.py --out runs/ablation

# The quality suite (docs/quality.md): QUALITY_SET=tuning|report|smoke, QUALITY_JOBS=N
# (default: from the device and cores), QUALITY_VARIANTS=baseline,pcl,full (default: pcl),
# QUALITY_AMP=bf16 (every stage's --amp), QUALITY_PROFILE=reference (the official code's
# settings, docs/parity.md); an arm of either needs its own QUALITY_OUT.
QUALITY_SET ?= tuning
QUALITY_OUT ?= runs/quality/$(QUALITY_SET)
QUALITY_JOBS ?=
QUALITY_VARIANTS ?=
QUALITY_AMP ?=
QUALITY_PROFILE ?=
quality: install
	$(BIN)/python experiments/quality.py --datasets $(QUALITY_SET) --out $(QUALITY_OUT) $(if $(QUALITY_JOBS),--jobs $(QUALITY_JOBS),) $(if $(QUALITY_VARIANTS),--loss-variants $(QUALITY_VARIANTS),) $(if $(QUALITY_AMP),--amp $(QUALITY_AMP),) $(if $(QUALITY_PROFILE),--profile $(QUALITY_PROFILE),)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
