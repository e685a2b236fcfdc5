/* svg.c - see svg.h.  Two panels, each with ticked and labelled axes (virtual seconds;
 * ports; connections per second) and a legend: source ports by state, stacked up to
 * every port of the run, and connections per second attempted, accepted at once,
 * stalled and failed.  Stalled and failed are drawn dashed and thick, so a run that
 * failed connections never reads as a good one. */
#include "sim/svg.h"

#include <math.h>

#include "core/twrule.h"

#define W 900
#define H 620
#define X0 90.0  /* plot area, left */
#define XW 770.0 /* plot area, width */
#define PH 190.0 /* panel height */

/* A round step so that 0..max takes about <ticks> steps: 1, 2 or 5 times a power of 10. */
static double nice_step(double max, int ticks)
{
    if (max <= 0)
        return 1;
    double raw = max / ticks, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static double value(const struct sim_second *s, int field)
{
    return field < 5 ? s->ports[field]
           : field == 5 ? s->attempted : field == 6 ? s->accepted
           : field == 7 ? s->stalled : s->failed;
}

/* The axes of a panel whose top is <y0>: y from 0 to <ymax> (ticks labelled), x from 0 to
 * <n> seconds (ticks labelled); the y axis title <ytitle>.  Returns the y range drawn
 * (a whole number of ticks, at least ymax). */
static double axes(FILE *f, double y0, double ymax, uint32_t n, const char *ytitle)
{
    double ys = nice_step(ymax, 5), ytop = ys * ceil(ymax / ys);
    if (ytop <= 0)
        ytop = ys;
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
               "stroke=\"#888\"/>\n", X0, y0, XW, PH);
    for (double v = 0; v <= ytop + ys / 2; v += ys) {
        double y = y0 + PH - PH * v / ytop;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>\n"
                   "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.10g</text>\n",
                X0, y, X0 + XW, y, X0 - 6, y + 4, v);
    }
    double xs = nice_step(n, 8);
    for (double t = 0; t <= n + xs / 2; t += xs) {
        double x = X0 + XW * t / (n > 0 ? n : 1);
        if (x > X0 + XW + 0.5)
            break;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#888\"/>\n"
                   "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.10g</text>\n",
                x, y0 + PH, x, y0 + PH + 5, x, y0 + PH + 18, t);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">virtual time (s)</text>\n",
            X0 + XW / 2, y0 + PH + 34);
    fprintf(f, "<text transform=\"translate(20,%.0f) rotate(-90)\" text-anchor=\"middle\">"
               "%s</text>\n", y0 + PH / 2, ytitle);
    return ytop;
}

static void series(FILE *f, const struct sim_result *r, uint32_t n, int field, double ytop,
                   double y0, const char *color, int dashed)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s points=\"", color,
            dashed ? "2.5" : "1.5", dashed ? " stroke-dasharray=\"6,3\"" : "");
    for (uint32_t i = 0; i < n; i++) /* second i+1 ends at x = i+1 */
        fprintf(f, "%.1f,%.1f ", X0 + XW * (i + 1) / (n > 0 ? n : 1),
                y0 + PH - PH * value(&r->per_second[i], field) / ytop);
    fprintf(f, "\"/>\n");
}

static void legend(FILE *f, double y0, const char *const *names, const char *const *colors,
                   const int *dashed, int count)
{
    for (int k = 0; k < count; k++) {
        double x = X0 + 10 + 150 * k, y = y0 - 10;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                   "stroke-width=\"%s\"%s/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                x, y - 4, x + 22, y - 4, colors[k], dashed[k] ? "2.5" : "1.5",
                dashed[k] ? " stroke-dasharray=\"6,3\"" : "", x + 27, y, names[k]);
    }
}

int sim_svg_write(FILE *f, const struct sim_params *p, const struct sim_result *r)
{
    uint32_t n = p->duration_s;
    double pmax = 0, cmax = 1;
    uint64_t stalled = 0, failed = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct sim_second *s = &r->per_second[i];
        double total = 0;
        for (int k = 0; k < 5; k++)
            total += s->ports[k];
        if (total > pmax)
            pmax = total;
        for (int k = 5; k < 9; k++)
            if (value(s, k) > cmax)
                cmax = value(s, k);
        stalled += s->stalled;
        failed += s->failed;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"%d\" height=\"%d\" "
               "fill=\"white\"/>\n", W, H, W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"20\" font-weight=\"bold\">twlb simulate: %s, %s stack "
               "(%s, %u s), %.0f conn/s offered, sustainable %.1f conn/s; %llu stalled, %llu "
               "failed</text>\n",
            X0, sim_policy_name(p->policy), p->stack.name, twrule_kind_name(p->stack.rule),
            p->stack.tw_seconds, p->rate, r->sustainable_rate, (unsigned long long)stalled,
            (unsigned long long)failed);

    static const char *const pc[5] = {"#2a9d8f", "#e76f51", "#264653", "#e9c46a", "#999999"};
    static const char *const pn[5] = {"free", "busy", "backend TIME_WAIT", "own TIME_WAIT",
                                      "quarantined"};
    static const int pd[5] = {0};
    double top1 = 70;
    double ytop = axes(f, top1, pmax, n, "source ports");
    for (int s = 0; s < 5; s++)
        series(f, r, n, s, ytop, top1, pc[s], 0);
    legend(f, top1, pn, pc, pd, 5);

    static const char *const cc[4] = {"#555555", "#2a9d8f", "#f4a261", "#e63946"};
    static const char *const cn[4] = {"attempted", "accepted at once", "stalled", "failed"};
    static const int cd[4] = {0, 0, 1, 1};
    double top2 = 360;
    ytop = axes(f, top2, cmax, n, "connections per second");
    for (int k = 0; k < 4; k++)
        series(f, r, n, 5 + k, ytop, top2, cc[k], cd[k]);
    legend(f, top2, cn, cc, cd, 4);
    fprintf(f, "</svg>\n");
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}
