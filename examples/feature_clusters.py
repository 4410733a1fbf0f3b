"""DEQ feature clusters: PCA of the MNIST DEQ's hidden state along the solver's trajectory.

    python examples/feature_clusters.py [--quick] [--out DIR] [--solver NAME] [--checkpoint FILE]

Trains the MNIST DEQ of ``mnist_deq.py`` (default solver ``dynamic_ss``; or loads it from
``--checkpoint``), records the hidden state of test digits at every iteration of the forward
solve (``steadysolve.solve(..., callback=...)``), projects it on the two principal components
of the final states and writes ``clusters.png`` (final 2-D clusters, coloured and marked by
digit) and ``clusters.gif`` (the clusters forming with depth; matplotlib's Pillow writer).
"""

from __future__ import annotations

from _common import out_path, parse, parser, trained

from steadysolve.demo import hidden_path, plot_clusters


def main(argv=None):
    args = parse(parser(__doc__, "forward solver for training and for the drawn trajectory"), argv, mnist=True)
    model, data, hist, _ = trained(args)
    n = 100 if args.quick else 500
    frames = hidden_path(model, data[2][:n], solver=args.solver)
    png, gif = out_path(args, "clusters.png"), out_path(args, "clusters.gif")
    plot_clusters(frames, data[3][:n], png, gif, max_frames=15 if args.quick else 30)
    print(f"test accuracy {hist[-1]['test_acc']:.3f}; trajectory of {len(frames) - 1} solver iterations "
          f"for {n} test digits\nwrote {png}\nwrote {gif}")
    return png, gif


if __name__ == "__main__":
    main()
