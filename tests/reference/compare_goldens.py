"""Compares two golden folders tensor by tensor (a fresh run of
make_goldens.py against the committed files):

    python3 tests/reference/compare_goldens.py tests/golden /tmp/fresh

Prints the largest relative difference per file; exits 1 above 1e-6.
"""
import glob
import os
import sys

from safetensors.numpy import load_file


def main():
    old_dir, new_dir = sys.argv[1], sys.argv[2]
    worst_all = 0.0
    for path in sorted(glob.glob(os.path.join(old_dir, "*.safetensors"))):
        old = load_file(path)
        new = load_file(os.path.join(new_dir, os.path.basename(path)))
        worst = 0.0
        for name, a in old.items():
            b = new[name]
            scale = max(float(abs(a).max()), 1e-30) if a.size else 1.0
            diff = float(abs(a.astype("float64") - b.astype("float64")).max()) if a.size else 0.0
            worst = max(worst, diff / scale)
        worst_all = max(worst_all, worst)
        print(f"{os.path.basename(path)}: max relative difference {worst:.2e}")
    print(f"all goldens: max relative difference {worst_all:.2e}")
    sys.exit(0 if worst_all <= 1e-6 else 1)


if __name__ == "__main__":
    main()
