"""The report's figures, drawn with matplotlib from numbers report.py has gathered.

  write       every figure there is something to draw for, each into its PNG file
  curves      loss (top) and accuracy (bottom) against epoch, training and validation, a column per setting
  cosine      the cosine learning rate over a run, against the constant one (schedule.py computes it)
  first_batch the images of the first training batch, with their class names (data.py's)
  noise       every setting's final validation accuracy with a 95% error bar, the report's beside ours
"""
import math
import os
import statistics

import matplotlib
matplotlib.use('Agg')  # files only: no window, no display needed
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

REPORT_STYLE = dict(marker='D', color='black')
OURS_STYLE = dict(marker='o', color='tab:blue')


def write(out, batch, schedule, experiments, noise_figure):
    """Each figure with something to draw, from first_batch's, cosine's, curves' and noise's arguments."""
    written = []
    def save(fig, name):
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        written.append(name)
    if batch is not None:
        save(first_batch(*batch), 'figure1_first_batch.png')
    save(cosine(*schedule), 'figure3_cosine.png')
    for number, name, title, columns in experiments:
        if columns:
            save(curves(number, title, columns), f'figure{number}_{name}.png')
    save(noise(*noise_figure), f'figure{noise_figure[0]}_noise.png')
    return written


def mean_curve(runs, key):
    """Epochs, and the mean and standard deviation over seeds of one metric per epoch, up to the
    shortest run."""
    n = min(len(r['metrics']) for r in runs)
    columns = [[r['metrics'][e][key] for r in runs] for e in range(n)]
    return list(range(1, n + 1)), [statistics.fmean(c) for c in columns], \
        [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]


def curves(number, title, settings):
    """Figures 2 and 4-9. settings: (name, its runs, a note such as 'in progress'), a column each;
    several seeds give their mean and a band of one standard deviation."""
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 6.5), squeeze=False)
    for ax in axes[1, 1:]:  # accuracies on one scale, to compare; losses each on its own, as a
        ax.sharey(axes[1, 0])  # diverging run's loss would flatten the others
    for col, (name, runs, note) in enumerate(settings):
        for split, color in (('train', 'tab:blue'), ('val', 'tab:orange')):
            for r, (metric, scale) in enumerate((('loss', 1), ('acc', 100))):
                epochs, mean, std = mean_curve(runs, f'{split}_{metric}')
                mean, std = [scale * m for m in mean], [scale * s for s in std]
                ax = axes[r, col]
                ax.plot(epochs, mean, color=color, label={'train': 'training', 'val': 'validation'}[split])
                if len(runs) > 1:
                    ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                    color=color, alpha=0.25, linewidth=0)
        seeds = f', {len(runs)} seeds' if len(runs) > 1 else ''
        axes[0, col].set_title(name + seeds + (f' ({note})' if note else ''), fontsize=9, wrap=True)
        axes[1, col].set_xlabel('epoch')
    axes[0, 0].set_ylabel('loss')
    axes[1, 0].set_ylabel('accuracy (%)')
    axes[0, 0].legend()
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f'Figure {number}: {title}', wrap=True)  # wrapped to the figure's width, however few columns
    fig.tight_layout()
    return fig


def cosine(rates, lr):
    """Figure 3: `rates`, the cosine schedule's learning rate at each epoch, from `lr`."""
    epochs = len(rates)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(epochs), rates, label='cosine annealing')
    ax.plot(range(epochs), [lr] * epochs, '--', label='constant')
    ax.set(xlabel='epoch', ylabel='learning rate')
    ax.set_title(f'Figure 3: cosine annealing from {lr} over {epochs} epochs', wrap=True)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def first_batch(images, labels, classes, columns=16):
    """Figure 1: (N, 3, 32, 32) uint8 images with their class names (classes[label]), `columns` to a row."""
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05))
    for ax in axes.flat:
        ax.axis('off')
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(classes[int(label)], fontsize=7, pad=2)
    fig.suptitle(f'Figure 1: the first {len(images)} images of the training split', wrap=True)
    fig.tight_layout()
    return fig


def noise(number, panels):
    """Figure 10: panels of (title, [report.NoisePoint]), each accuracy with its 95% interval: 1.96
    binomial standard errors for one run, t(k - 1) standard errors of the mean for k seeds
    (report.Estimate.interval). Where two bars overlap a lot, their difference is within the noise
    the bars show (one run's bar leaves out the noise of training: only seeds see it). Our point is
    hollow where our runs are not the report's setting: the tables say how. Three panels to a row,
    as many rows as the study's tables need."""
    columns = max(1, min(3, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.7 * columns, 3.6 * rows + 1.3), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis('off')
    for ax, (title, points) in zip(axes.flat, panels):
        for x, point in enumerate(points):
            for offset, estimate, style in ((-0.12, point.report, REPORT_STYLE), (0.12, point.ours, OURS_STYLE)):
                if estimate:
                    hollow = dict(markerfacecolor='white') if style is OURS_STYLE and point.departs else {}
                    ax.errorbar(x + offset, 100 * estimate.mean, yerr=100 * estimate.interval(), capsize=4,
                                **style, **hollow)
        ax.set_xticks(range(len(points)), [p.name for p in points], fontsize=8)
        ax.set_xlim(-0.6, len(points) - 0.4)
        ax.set_title(title, fontsize=10, wrap=True)
        ax.grid(alpha=0.3, axis='y')
    for ax in axes[:, 0]:
        ax.set_ylabel('validation accuracy (%)')
    handles = [plt.Line2D([], [], linestyle='', **style) for style in (REPORT_STYLE, OURS_STYLE)]
    handles.append(plt.Line2D([], [], linestyle='', markerfacecolor='white', **OURS_STYLE))
    fig.legend(handles, ['the report: one run, ± 1.96 binomial se on 10,000 images',
                         'ours: one run, ± 1.96 binomial se; k seeds, ± t(k − 1) sem (4.30 sem for 3 seeds), Student\'s t',
                         'ours, not the report\'s setting (fewer epochs, a subset, another batch) or unfinished'],
               loc='lower center', ncol=1, frameon=False, fontsize=9)
    fig.suptitle(f'Figure {number}: final validation accuracy of every setting, with 95% error bars', wrap=True)
    fig.tight_layout(rect=(0, 1.1 / (3.6 * rows + 1.3), 1, 1))  # room below for the legend
    return fig
