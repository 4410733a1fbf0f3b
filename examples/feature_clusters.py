"""DEQ feature clusters: PCA of the MNIST DEQ's hidden state along the solver's trajectory.

    python examples/feature_clusters.py [--quick] [--out DIR] [--solver NAME]

Trains the MNIST DEQ of ``mnist_deq.py`` (default solver ``dynamic_ss``), records the hidden
state of test digits at every iteration of the forward solve (``steadysolve.solve(...,
callback=...)``), projects it on the two principal components of the final states and writes
``clusters.png`` (final 2-D clusters, coloured and marked by digit) and ``clusters.gif`` (the
clusters forming with depth; matplotlib's Pillow writer).
"""

from __future__ import annotations

import argparse
import os

from steadysolve.demo import build_model, hidden_path, load_mnist, plot_clusters, train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 train digits, 1 epoch, 100 test digits")
    ap.add_argument("--solver", default="dynamic_ss", help="solver whose trajectory is drawn")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data, _ = load_mnist(args.data_dir, *((2000, 300) if args.quick else (None, None)))
    model = build_model()
    hist = train(model, data, epochs=1 if args.quick else 5, batch=32 if args.quick else 64)
    model.eval()
    n = 100 if args.quick else 500
    frames = hidden_path(model, data[2][:n], solver=args.solver)
    png, gif = os.path.join(args.out, "clusters.png"), os.path.join(args.out, "clusters.gif")
    plot_clusters(frames, data[3][:n], png, gif, max_frames=15 if args.quick else 30)
    print(f"test accuracy {hist[-1]['test_acc']:.3f}; trajectory of {len(frames) - 1} solver iterations "
          f"for {n} test digits\nwrote {png}\nwrote {gif}")
    return png, gif


if __name__ == "__main__":
    main()
