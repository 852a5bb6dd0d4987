/* SPDX-License-Identifier: MIT
 * examples/common/plot.h: the one plotting helper of every program that draws (examples/ and
 * bench/), on cairo: a figure of side by side panels, each with a title, axis labels, ticks,
 * lines (solid or dashed), arrows, points, an image (a heat map) and a legend, saved atomically
 * as PNG. plot_destroy also frees cairo's and fontconfig's caches (a program under LeakSanitizer
 * exits clean). Built only when cairo is found: programs test HAVE_PLOT. Not part of the library.
 */
#ifndef PLOT_H
#define PLOT_H

#include <stdbool.h>

typedef struct plot_figure plot_figure;
typedef struct {
    double r, g, b;
} plot_rgb;

#define PLOT_BLUE ((plot_rgb){0.12, 0.47, 0.71})
#define PLOT_ORANGE ((plot_rgb){1.00, 0.50, 0.05})
#define PLOT_GREEN ((plot_rgb){0.17, 0.63, 0.17})
#define PLOT_GRAY ((plot_rgb){0.45, 0.45, 0.45})
#define PLOT_BLACK ((plot_rgb){0, 0, 0})

/* A white figure of n_panels panels side by side, each panel_w x panel_h pixels. */
plot_figure *plot_create(int n_panels, int panel_w, int panel_h, const char *suptitle);
void plot_destroy(plot_figure *fig);

/* Sets a panel's title, labels and data ranges, and draws its frame and ticks. */
void plot_axes(plot_figure *fig, int panel, const char *title, const char *xlabel,
               const char *ylabel, double xmin, double xmax, double ymin, double ymax);
/* A bar-chart panel: categories 0 .. n-1 along x, each named below the axis. */
void plot_axes_categories(plot_figure *fig, int panel, const char *title, const char *ylabel,
                          double ymin, double ymax, int n, const char *const *names);
/* A filled rectangle in data coordinates, and text at a data point (centred). */
void plot_rect(plot_figure *fig, int panel, double x0, double y0, double x1, double y1,
               plot_rgb color);
void plot_text(plot_figure *fig, int panel, double x, double y, const char *text, double size);
/* A polyline through (x[i * stride], y[i * stride]). */
void plot_line(plot_figure *fig, int panel, const double *x, const double *y, int n, int stride,
               plot_rgb color, double width, bool dashed);
void plot_arrow(plot_figure *fig, int panel, double x, double y, double dx, double dy,
                plot_rgb color);
void plot_points(plot_figure *fig, int panel, const double *x, const double *y, int n, int stride,
                 plot_rgb color, double radius, double alpha);
/* values (rows, cols) over the panel's full data range, row 0 at the top, mapped through a
 * perceptual (viridis-like) colour map from vmin to vmax. */
void plot_image(plot_figure *fig, int panel, const double *values, int rows, int cols, double vmin,
                double vmax);
/* The image's colour for v in [0, 1] (viridis). */
plot_rgb plot_colormap(double v);
void plot_legend(plot_figure *fig, int panel, int slot, const char *label, plot_rgb color,
                 bool dashed);
/* Writes the PNG to path through a temporary file and a rename; 0 on success. */
int plot_save(plot_figure *fig, const char *path);

#endif
