/* svg.c - see svg.h.  Two panels of 800 x 200 px: ports by state (y up to every port
 * of every backend) and connections per second (y up to the busiest second's attempts);
 * one polyline per series, x spread evenly over the run. */
#include "sim/svg.h"

#include "core/twrule.h"

static void polyline(FILE *f, const struct sim_result *r, uint32_t n, int field, double ymax,
                     double x0, double y0, double w, double hgt, const char *color)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    for (uint32_t i = 0; i < n; i++) {
        const struct sim_second *s = &r->per_second[i];
        double v = field < 5 ? s->ports[field]
                   : field == 5 ? s->attempted : field == 6 ? s->accepted
                   : field == 7 ? s->stalled : s->failed;
        fprintf(f, "%.1f,%.1f ", x0 + w * i / (n > 1 ? n - 1 : 1),
                y0 + hgt - (ymax > 0 ? hgt * v / ymax : 0));
    }
    fprintf(f, "\"/>\n");
}

int sim_svg_write(FILE *f, const struct sim_params *p, const struct sim_result *r)
{
    uint32_t n = p->duration_s;
    double pmax = (double)((uint32_t)p->port_hi - p->port_lo + 1) * p->n_backends, cmax = 1;
    for (uint32_t i = 0; i < n; i++)
        if (r->per_second[i].attempted > cmax)
            cmax = r->per_second[i].attempted;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"560\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"900\" height=\"560\" "
               "fill=\"white\"/>\n");
    fprintf(f, "<text x=\"60\" y=\"20\">twlb simulate: %s, %s stack (%s, %u s), %.0f conn/s, "
               "sustainable %.1f conn/s</text>\n",
            sim_policy_name(p->policy), p->stack.name, twrule_kind_name(p->stack.rule),
            p->stack.tw_seconds, p->rate, r->sustainable_rate);
    const char *pc[5] = {"#2a9d8f", "#e76f51", "#264653", "#e9c46a", "#999999"};
    const char *pn[5] = {"free", "busy", "remote TIME_WAIT", "local TIME_WAIT", "quarantined"};
    fprintf(f, "<text x=\"60\" y=\"45\">source ports by state (max %.0f)</text>\n", pmax);
    fprintf(f, "<rect x=\"60\" y=\"50\" width=\"800\" height=\"200\" fill=\"none\" stroke=\"#ccc\"/>\n");
    for (int s = 0; s < 5; s++) {
        polyline(f, r, n, s, pmax, 60, 50, 800, 200, pc[s]);
        fprintf(f, "<text x=\"%d\" y=\"268\" fill=\"%s\">%s</text>\n", 60 + s * 150, pc[s], pn[s]);
    }
    const char *cc[4] = {"#555555", "#2a9d8f", "#e9c46a", "#e63946"};
    const char *cn[4] = {"attempted", "accepted at once", "stalled", "failed"};
    fprintf(f, "<text x=\"60\" y=\"300\">connections per second (max %.0f), over %u s</text>\n",
            cmax, n);
    fprintf(f, "<rect x=\"60\" y=\"305\" width=\"800\" height=\"200\" fill=\"none\" stroke=\"#ccc\"/>\n");
    for (int k = 0; k < 4; k++) {
        polyline(f, r, n, 5 + k, cmax, 60, 305, 800, 200, cc[k]);
        fprintf(f, "<text x=\"%d\" y=\"525\" fill=\"%s\">%s</text>\n", 60 + k * 150, cc[k], cn[k]);
    }
    fprintf(f, "</svg>\n");
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}
