/* SPDX-License-Identifier: MIT
 * examples/common/plot.c: see plot.h. Each panel maps its data range into a plotting box inside
 * the panel, leaving margins for the title, ticks and labels. Destroying a figure also frees
 * cairo's and fontconfig's static caches, so that a leak checker finds nothing at exit. */
#include <cairo.h>
#ifdef PLOT_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plot.h"

#define MAX_PANELS 8

typedef struct {
    double x0, y0, w, h;           /* plotting box in pixels */
    double xmin, xmax, ymin, ymax; /* data range */
} panel;

struct plot_figure {
    cairo_surface_t *surface;
    cairo_t *cr;
    int n_panels, panel_w, panel_h, top;
    panel panels[MAX_PANELS];
};

plot_figure *plot_create(int n_panels, int panel_w, int panel_h, const char *suptitle)
{
    if (n_panels < 1 || n_panels > MAX_PANELS) return NULL;
    plot_figure *fig = calloc(1, sizeof *fig);
    if (!fig) return NULL;
    fig->top = suptitle ? 36 : 0;
    fig->surface =
        cairo_image_surface_create(CAIRO_FORMAT_RGB24, n_panels * panel_w, panel_h + fig->top);
    fig->cr = cairo_create(fig->surface);
    fig->n_panels = n_panels, fig->panel_w = panel_w, fig->panel_h = panel_h;
    cairo_set_source_rgb(fig->cr, 1, 1, 1);
    cairo_paint(fig->cr);
    cairo_select_font_face(fig->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           CAIRO_FONT_WEIGHT_NORMAL);
    if (suptitle) {
        cairo_set_source_rgb(fig->cr, 0, 0, 0);
        cairo_set_font_size(fig->cr, 17);
        cairo_text_extents_t e;
        cairo_text_extents(fig->cr, suptitle, &e);
        cairo_move_to(fig->cr, (n_panels * panel_w - e.width) / 2, 25);
        cairo_show_text(fig->cr, suptitle);
    }
    return fig;
}

void plot_destroy(plot_figure *fig)
{
    if (!fig) return;
    cairo_destroy(fig->cr);
    cairo_surface_destroy(fig->surface);
    free(fig);
    // with no cairo object left, the font caches go too (the next figure builds them again)
    cairo_debug_reset_static_data();
#ifdef PLOT_HAVE_FONTCONFIG
    FcFini();
#endif
}

static double px(const panel *p, double x)
{
    return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w;
}

static double py(const panel *p, double y)
{
    return p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h;
}

static void text_centered(cairo_t *cr, const char *s, double x, double y, double size, bool rotate)
{
    cairo_text_extents_t e;
    cairo_set_font_size(cr, size);
    cairo_text_extents(cr, s, &e);
    cairo_save(cr);
    cairo_move_to(cr, x, y);
    if (rotate) cairo_rotate(cr, -M_PI / 2);
    cairo_rel_move_to(cr, -e.width / 2 - e.x_bearing, e.height / 2);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

/* a "nice" tick step giving about 5 ticks */
static double tick_step(double range)
{
    double raw = range / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

/* ticks and their values along the left edge of a panel */
static void y_ticks(cairo_t *cr, const panel *p)
{
    char buf[32];
    double step = tick_step(p->ymax - p->ymin);
    for (double v = ceil(p->ymin / step) * step; v <= p->ymax + 1e-9 * step; v += step) {
        double y = py(p, v);
        cairo_move_to(cr, p->x0 - 5, y);
        cairo_line_to(cr, p->x0, y);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%g", fabs(v) < 1e-12 * step ? 0.0 : v);
        cairo_text_extents_t e;
        cairo_set_font_size(cr, 11);
        cairo_text_extents(cr, buf, &e);
        cairo_move_to(cr, p->x0 - 8 - e.width, y + e.height / 2);
        cairo_show_text(cr, buf);
    }
}

void plot_axes(plot_figure *fig, int i, const char *title, const char *xlabel, const char *ylabel,
               double xmin, double xmax, double ymin, double ymax)
{
    panel *p = &fig->panels[i];
    cairo_t *cr = fig->cr;
    double left = i * fig->panel_w;
    *p = (panel){left + 70, fig->top + 40, fig->panel_w - 95, fig->panel_h - 100, xmin, xmax,
                 ymin,      ymax};
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_centered(cr, title, p->x0 + p->w / 2, fig->top + 18, 15, false);
    if (xlabel) text_centered(cr, xlabel, p->x0 + p->w / 2, p->y0 + p->h + 45, 13, false);
    if (ylabel) text_centered(cr, ylabel, left + 18, p->y0 + p->h / 2, 13, true);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, p->x0, p->y0, p->w, p->h);
    cairo_stroke(cr);
    char buf[32];
    double step = tick_step(xmax - xmin);
    for (double v = ceil(xmin / step) * step; v <= xmax + 1e-9 * step; v += step) {
        double x = px(p, v);
        cairo_move_to(cr, x, p->y0 + p->h);
        cairo_line_to(cr, x, p->y0 + p->h + 5);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%g", fabs(v) < 1e-12 * step ? 0.0 : v);
        text_centered(cr, buf, x, p->y0 + p->h + 17, 11, false);
    }
    y_ticks(cr, p);
}

void plot_axes_categories(plot_figure *fig, int i, const char *title, const char *ylabel,
                          double ymin, double ymax, int n, const char *const *names)
{
    panel *p = &fig->panels[i];
    cairo_t *cr = fig->cr;
    double left = i * fig->panel_w;
    *p = (panel){left + 70, fig->top + 40, fig->panel_w - 95, fig->panel_h - 100, 0, n, ymin, ymax};
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_centered(cr, title, p->x0 + p->w / 2, fig->top + 18, 15, false);
    if (ylabel) text_centered(cr, ylabel, left + 18, p->y0 + p->h / 2, 13, true);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, p->x0, p->y0, p->w, p->h);
    cairo_stroke(cr);
    for (int k = 0; k < n; k++)
        text_centered(cr, names[k], px(p, k + 0.5), p->y0 + p->h + 17, 12, false);
    y_ticks(cr, p);
}

void plot_rect(plot_figure *fig, int i, double x0, double y0, double x1, double y1, plot_rgb c)
{
    panel *p = &fig->panels[i];
    cairo_set_source_rgb(fig->cr, c.r, c.g, c.b);
    cairo_rectangle(fig->cr, px(p, x0), py(p, y1), px(p, x1) - px(p, x0), py(p, y0) - py(p, y1));
    cairo_fill(fig->cr);
}

void plot_text(plot_figure *fig, int i, double x, double y, const char *text, double size)
{
    panel *p = &fig->panels[i];
    cairo_set_source_rgb(fig->cr, 0, 0, 0);
    text_centered(fig->cr, text, px(p, x), py(p, y), size, false);
}

static void clip_to(plot_figure *fig, const panel *p)
{
    cairo_save(fig->cr);
    cairo_rectangle(fig->cr, p->x0, p->y0, p->w, p->h);
    cairo_clip(fig->cr);
}

void plot_line(plot_figure *fig, int i, const double *x, const double *y, int n, int stride,
               plot_rgb c, double width, bool dashed)
{
    panel *p = &fig->panels[i];
    cairo_t *cr = fig->cr;
    clip_to(fig, p);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, width);
    double dash[2] = {6, 4};
    cairo_set_dash(cr, dash, dashed ? 2 : 0, 0);
    for (int k = 0; k < n; k++) {
        double X = px(p, x[(size_t)k * stride]), Y = py(p, y[(size_t)k * stride]);
        if (k == 0)
            cairo_move_to(cr, X, Y);
        else
            cairo_line_to(cr, X, Y);
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

void plot_arrow(plot_figure *fig, int i, double x, double y, double dx, double dy, plot_rgb c)
{
    panel *p = &fig->panels[i];
    cairo_t *cr = fig->cr;
    double X0 = px(p, x), Y0 = py(p, y), X1 = px(p, x + dx), Y1 = py(p, y + dy);
    double len = hypot(X1 - X0, Y1 - Y0);
    if (len < 1e-9) return;
    clip_to(fig, p);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, 1.2);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_move_to(cr, X0, Y0);
    cairo_line_to(cr, X1, Y1);
    cairo_stroke(cr);
    double ux = (X1 - X0) / len, uy = (Y1 - Y0) / len, head = fmin(5, 0.5 * len);
    cairo_move_to(cr, X1, Y1);
    cairo_line_to(cr, X1 - head * (ux + 0.5 * uy), Y1 - head * (uy - 0.5 * ux));
    cairo_line_to(cr, X1 - head * (ux - 0.5 * uy), Y1 - head * (uy + 0.5 * ux));
    cairo_close_path(cr);
    cairo_fill(cr);
    cairo_restore(cr);
}

void plot_points(plot_figure *fig, int i, const double *x, const double *y, int n, int stride,
                 plot_rgb c, double radius, double alpha)
{
    panel *p = &fig->panels[i];
    cairo_t *cr = fig->cr;
    clip_to(fig, p);
    cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
    for (int k = 0; k < n; k++) {
        cairo_arc(cr, px(p, x[(size_t)k * stride]), py(p, y[(size_t)k * stride]), radius, 0,
                  2 * M_PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
}

/* viridis (matplotlib's), piecewise linear through 11 of its colours */
plot_rgb plot_colormap(double v)
{
    static const unsigned char cm[11][3] = {{68, 1, 84},    {72, 36, 117},  {65, 68, 135},
                                            {53, 95, 141},  {42, 120, 142}, {33, 145, 140},
                                            {34, 168, 132}, {68, 191, 112}, {122, 209, 81},
                                            {189, 223, 38}, {253, 231, 37}};
    v = isnan(v) ? 0 : fmin(fmax(v, 0), 1) * 10;
    int k = v >= 10 ? 9 : (int)v;
    double f = v - k;
    return (plot_rgb){((1 - f) * cm[k][0] + f * cm[k + 1][0]) / 255,
                      ((1 - f) * cm[k][1] + f * cm[k + 1][1]) / 255,
                      ((1 - f) * cm[k][2] + f * cm[k + 1][2]) / 255};
}

void plot_image(plot_figure *fig, int i, const double *values, int rows, int cols, double vmin,
                double vmax)
{
    panel *p = &fig->panels[i];
    cairo_t *cr = fig->cr;
    double cw = p->w / cols, ch = p->h / rows;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            plot_rgb col = plot_colormap((values[(size_t)r * cols + c] - vmin) / (vmax - vmin));
            cairo_set_source_rgb(cr, col.r, col.g, col.b);
            cairo_rectangle(cr, p->x0 + c * cw, p->y0 + r * ch, cw + 0.5, ch + 0.5);
            cairo_fill(cr);
        }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, p->x0, p->y0, p->w, p->h);
    cairo_stroke(cr);
}

void plot_legend(plot_figure *fig, int i, int slot, const char *label, plot_rgb c, bool dashed)
{
    panel *p = &fig->panels[i];
    cairo_t *cr = fig->cr;
    double x = p->x0 + 10, y = p->y0 + 14 + 18 * slot;
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, 2);
    double dash[2] = {6, 4};
    cairo_set_dash(cr, dash, dashed ? 2 : 0, 0);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + 24, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 12);
    cairo_move_to(cr, x + 30, y + 4);
    cairo_show_text(cr, label);
}

int plot_save(plot_figure *fig, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return -1;
    cairo_surface_flush(fig->surface);
    if (cairo_surface_write_to_png(fig->surface, tmp) != CAIRO_STATUS_SUCCESS) {
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}
