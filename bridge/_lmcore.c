/* The fitter's inner loop in C: `bridge.fit._lm` and the `_Model` it drives, step for step; and
 * the cold fit's placement of bands around it (`bridge.fit._fit_greedy_numpy`, `greedy` below).
 *
 * Why: a ReaEQ fit is ~17 Levenberg-Marquardt iterations on 12 parameters and 96 grid points.
 * In numpy each iteration is ~60 calls on arrays of a few hundred values, so the fit costs call
 * overhead, not arithmetic (bench/fit_quality.py times both loops on every mapping). The placement
 * between the stages was the same in Python; with it here too, a cold ReaEQ fit takes a median
 * 0.40 ms against 3.26 ms for the numpy code (`bench/fit_quality.py`, which prints both). This file does
 * the same arithmetic in the same order; `bridge.fit` falls back to its numpy code when this
 * module is not built (no compiler at install time) and whenever it returns None (a step matrix
 * that is not positive definite, which damping > 0 rules out).
 *
 * The maths is documented where it is written in Python (`bridge.fit._Model.cost`, `.jacobian_t`,
 * `._rows`, `.hess_grad`, `bridge.fit._lm`); names follow those. Differences from the numpy
 * path are rounding only: dot products summed in another order, and the damped normal equations
 * solved by Cholesky (the matrix is symmetric positive definite) rather than LAPACK's LU.
 *
 * Memory comes from PyMem_Raw*: the loop runs with the GIL released, so the daemon's other
 * threads (OSC input, targets) go on meanwhile.
 *
 * Layouts: x = [ln f (k), gain dB (k), ln Q (k)]; ea[m][nd][b] the exponent of A in alpha, beta,
 * c (m) of N and D (nd) for band b (see `bridge.fit._Structure`); grid arrays have npts values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

typedef struct {
    Py_ssize_t k, n, npts;
    double db, h; /* bridge.filters._DB (dB of a power ratio per ln) and _H (ln A per gain dB) */
    const double *ea, *tan2, *sw, *sw_db, *sw_target, *lo, *hi, *pw, *ph;
    const unsigned char *free;
    double pc, log_pi_sr;
    const long long *pair_i, *pair_j, *cross_i, *cross_j;
    Py_ssize_t npairs, ncross;
    double cancel_pull, cancel_width, cancel_reach, cross_pull, cross_margin;
} Problem;

typedef struct {   /* what `_Model.cost` keeps for the Jacobian */
    double *abc;   /* [m][nd][b]: alpha, beta, c */
    double *half0; /* [b] */
    double *y;     /* [b][i] */
    double *p, *cy, *xx; /* [nd][b][i] */
    double *s, *rf; /* [i] */
    double *dx;    /* [n] */
    double cost;
    int nrows;
    double *row_r;     /* [row] value */
    int *row_len;      /* [row] entries (2 or 3) */
    int *row_idx;      /* [row][3] */
    double *row_d;     /* [row][3] */
} State;

static int state_alloc(State *s, const Problem *P, Py_ssize_t maxrows) {
    Py_ssize_t k = P->k, np_ = P->npts;
    size_t nd = (size_t)(6 * k + k + k * np_ + 6 * k * np_ + 2 * np_ + P->n + maxrows * 4);
    double *m = PyMem_RawCalloc(nd, sizeof(double));
    int *mi = PyMem_RawCalloc((size_t)(maxrows * 4 + 1), sizeof(int));
    if (!m || !mi) { PyMem_RawFree(m); PyMem_RawFree(mi); return -1; }
    s->abc = m; m += 6 * k;
    s->half0 = m; m += k;
    s->y = m; m += k * np_;
    s->p = m; m += 2 * k * np_;
    s->cy = m; m += 2 * k * np_;
    s->xx = m; m += 2 * k * np_;
    s->s = m; m += np_;
    s->rf = m; m += np_;
    s->dx = m; m += P->n;
    s->row_r = m; m += maxrows;
    s->row_d = m;
    s->row_len = mi; s->row_idx = mi + maxrows;
    s->nrows = 0;
    return 0;
}

static void state_free(State *s) { PyMem_RawFree(s->abc); PyMem_RawFree(s->row_len); }

static void add_row(State *s, double r, int len, const int *idx, const double *d) {
    int q = s->nrows++;
    s->row_r[q] = r;
    s->row_len[q] = len;
    for (int e = 0; e < len; e++) { s->row_idx[3 * q + e] = idx[e]; s->row_d[3 * q + e] = d[e]; }
}

/* `_Model._rows` / `_cancel_rows`: the nonzero penalty rows at x */
static void penalty_rows(const Problem *P, const double *x, State *s) {
    Py_ssize_t k = P->k;
    double cw2 = P->cancel_width * P->cancel_width;
    s->nrows = 0;
    for (Py_ssize_t q = 0; q < P->npairs; q++) {
        int i = (int)P->pair_i[q], j = (int)P->pair_j[q];
        double gi = x[k + i], gj = x[k + j], d = x[i] - x[j];
        if (gi * gj < 0.0 && -P->cancel_reach < d && d < P->cancel_reach) {
            double cl = P->cancel_pull * exp(-0.5 * d * d / cw2);
            int sm = fabs(gi) <= fabs(gj) ? i : j;
            double gs = sm == i ? gi : gj;
            double r = cl * fabs(gs);
            double dr = -r * d / cw2;
            int idx[3] = {i, j, (int)k + sm};
            double dd[3] = {dr, -dr, copysign(cl, gs)};
            add_row(s, r, 3, idx, dd);
        }
    }
    for (Py_ssize_t q = 0; q < P->ncross; q++) {
        int i = (int)P->cross_i[q], j = (int)P->cross_j[q];
        double over = x[i] - x[j] + P->cross_margin;
        if (over > 0.0) {
            int idx[2] = {i, j};
            double dd[2] = {P->cross_pull, -P->cross_pull};
            add_row(s, P->cross_pull * over, 2, idx, dd);
        }
    }
}

/* `_Model.cost` */
static void model_cost(const Problem *P, const double *x, State *s) {
    Py_ssize_t k = P->k, np_ = P->npts;
    for (Py_ssize_t b = 0; b < k; b++) {
        double lna = P->h * x[k + b], lnq = x[2 * k + b];
        for (int m = 0; m < 3; m++)
            for (int nd = 0; nd < 2; nd++) {
                Py_ssize_t o = (m * 2 + nd) * k + b;
                s->abc[o] = exp(P->ea[o] * lna + (m == 2 ? -2.0 * lnq : 0.0));
            }
        s->half0[b] = exp(x[b] + P->log_pi_sr);
    }
    for (Py_ssize_t i = 0; i < np_; i++) s->s[i] = 0.0;
    for (Py_ssize_t b = 0; b < k; b++) {
        double t0 = tan(s->half0[b]), t02 = t0 * t0;
        double *y = s->y + b * np_;
        for (Py_ssize_t i = 0; i < np_; i++) y[i] = P->tan2[i] / t02;
        for (int nd = 0; nd < 2; nd++) {
            double al = s->abc[(0 * 2 + nd) * k + b], be = s->abc[(1 * 2 + nd) * k + b];
            double c = s->abc[(2 * 2 + nd) * k + b];
            double *p = s->p + (nd * k + b) * np_, *cy = s->cy + (nd * k + b) * np_;
            double *xx = s->xx + (nd * k + b) * np_;
            for (Py_ssize_t i = 0; i < np_; i++) {
                p[i] = al - be * y[i];
                cy[i] = c * y[i];
                xx[i] = p[i] * p[i] + cy[i];
            }
        }
        const double *xn = s->xx + b * np_, *xd = s->xx + (k + b) * np_;
        for (Py_ssize_t i = 0; i < np_; i++) s->s[i] += log(xn[i] / xd[i]);
    }
    double c1 = 0.0, c2 = 0.0;
    for (Py_ssize_t i = 0; i < np_; i++) {
        s->rf[i] = P->sw_db[i] * s->s[i] - P->sw_target[i];
        c1 += s->rf[i] * s->rf[i];
    }
    for (Py_ssize_t q = 0; q < P->n; q++) {
        s->dx[q] = x[q] - P->ph[q];
        c2 += P->pw[q] * (s->dx[q] * s->dx[q]);
    }
    double cost = c1 + c2 + P->pc;
    s->nrows = 0;
    if (P->npairs || P->ncross) {
        penalty_rows(P, x, s);
        double c3 = 0.0;
        for (int q = 0; q < s->nrows; q++) c3 += s->row_r[q] * s->row_r[q];
        cost += c3;
    }
    s->cost = cost;
}

/* `_Model.jacobian_t` and `.hess_grad`: jt (n x npts), hess (n x n), grad (n) */
static void model_hess_grad(const Problem *P, const State *s, double *jt, double *hess, double *grad) {
    Py_ssize_t k = P->k, np_ = P->npts, n = P->n;
    double scale1 = P->db * P->h, scale2 = -2.0 * P->db;
    for (Py_ssize_t b = 0; b < k; b++) {
        double h0 = s->half0[b];
        double scale0 = (-P->db * 4.0) * h0 / sin(2.0 * h0);
        const double *y = s->y + b * np_;
        double t[3][2];
        double *j0 = jt + (0 * k + b) * np_, *j1 = jt + (1 * k + b) * np_, *j2 = jt + (2 * k + b) * np_;
        for (Py_ssize_t i = 0; i < np_; i++) {
            for (int nd = 0; nd < 2; nd++) {
                Py_ssize_t o = (nd * k + b) * np_ + i;
                double al = s->abc[(0 * 2 + nd) * k + b], be = s->abc[(1 * 2 + nd) * k + b];
                double c = s->abc[(2 * 2 + nd) * k + b];
                double inv = 1.0 / s->xx[o];
                double pinv = s->p[o] * inv;
                t[0][nd] = c * inv - (2.0 * be) * pinv;
                t[2][nd] = s->cy[o] * inv;
                double w0 = 2.0 * P->ea[(0 * 2 + nd) * k + b] * al;
                double w1 = 2.0 * P->ea[(1 * 2 + nd) * k + b] * be;
                t[1][nd] = (w0 - w1 * y[i]) * pinv + P->ea[(2 * 2 + nd) * k + b] * t[2][nd];
            }
            j0[i] = (t[0][0] - t[0][1]) * y[i] * scale0 * P->sw[i];
            j1[i] = (t[1][0] - t[1][1]) * scale1 * P->sw[i];
            j2[i] = (t[2][0] - t[2][1]) * scale2 * P->sw[i];
        }
    }
    for (Py_ssize_t a = 0; a < n; a++) {
        const double *ja = jt + a * np_;
        for (Py_ssize_t c = 0; c <= a; c++) {
            const double *jc = jt + c * np_;
            double acc = 0.0;
            for (Py_ssize_t i = 0; i < np_; i++) acc += ja[i] * jc[i];
            hess[a * n + c] = hess[c * n + a] = acc;
        }
        hess[a * n + a] += P->pw[a];
        double g = 0.0;
        for (Py_ssize_t i = 0; i < np_; i++) g += ja[i] * s->rf[i];
        grad[a] = g + P->pw[a] * s->dx[a];
    }
    for (int q = 0; q < s->nrows; q++) {
        int len = s->row_len[q];
        const int *idx = s->row_idx + 3 * q;
        const double *d = s->row_d + 3 * q;
        for (int e = 0; e < len; e++) {
            grad[idx[e]] += d[e] * s->row_r[q];
            for (int f = 0; f < len; f++) hess[idx[e] * n + idx[f]] += d[e] * d[f];
        }
    }
}

/* Solve m z = r in place (r becomes z) for symmetric positive definite m (destroyed).
 * Returns 0, or -1 when m is not positive definite. */
static int cholesky_solve(double *m, double *r, Py_ssize_t n) {
    for (Py_ssize_t j = 0; j < n; j++) {
        double d = m[j * n + j];
        for (Py_ssize_t q = 0; q < j; q++) d -= m[j * n + q] * m[j * n + q];
        if (!(d > 0.0)) return -1;
        d = sqrt(d);
        m[j * n + j] = d;
        for (Py_ssize_t i = j + 1; i < n; i++) {
            double v = m[i * n + j];
            for (Py_ssize_t q = 0; q < j; q++) v -= m[i * n + q] * m[j * n + q];
            m[i * n + j] = v / d;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = r[i];
        for (Py_ssize_t q = 0; q < i; q++) v -= m[i * n + q] * r[q];
        r[i] = v / m[i * n + i];
    }
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        double v = r[i];
        for (Py_ssize_t q = i + 1; q < n; q++) v -= m[q * n + i] * r[q];
        r[i] = v / m[i * n + i];
    }
    return 0;
}

static double clip(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* `bridge.fit._lm`. x (in/out, n), s_out (out, npts: the summed ln-ratio at the end, `state[1]`).
 * Returns the final damping, or NAN when a step matrix was not positive definite. */
static double lm(const Problem *P, double *x, double *s_out, int max_iter, double rtol, double lam,
                 int all_free, int *failed) {
    Py_ssize_t n = P->n, np_ = P->npts;
    Py_ssize_t maxrows = P->npairs + P->ncross;
    State cur = {0}, trial = {0};
    *failed = 0;
    if (state_alloc(&cur, P, maxrows) || state_alloc(&trial, P, maxrows)) {
        state_free(&cur); state_free(&trial);
        *failed = 2;
        return NAN;
    }
    double *work = PyMem_RawCalloc((size_t)(n * np_ + 3 * n * n + 6 * n), sizeof(double));
    unsigned char *held = PyMem_RawCalloc((size_t)n + 1, 1);
    if (!work || !held) {
        PyMem_RawFree(work); PyMem_RawFree(held); state_free(&cur); state_free(&trial);
        *failed = 2;
        return NAN;
    }
    double *jt = work, *hess = jt + n * np_, *hc = hess + n * n, *m = hc + n * n;
    double *grad = m + n * n, *gc = grad + n, *diag = gc + n, *step = diag + n, *xn = step + n;
    for (Py_ssize_t q = 0; q < n; q++) x[q] = clip(x[q], P->lo[q], P->hi[q]);
    model_cost(P, x, &cur);
    if (P->k > 0 && max_iter > 0) {
        double nu = 2.0;
        for (int it = 0; it < max_iter; it++) {
            model_hess_grad(P, &cur, jt, hess, grad);
            int interior = all_free;
            for (Py_ssize_t q = 0; interior && q < n; q++)  /* numpy: min(...) > 0, NaN fails */
                interior = (x[q] - P->lo[q]) * (P->hi[q] - x[q]) > 0.0;
            int any_held = 0, all_held = 1;
            if (!interior) {
                for (Py_ssize_t q = 0; q < n; q++) {
                    held[q] = (x[q] <= P->lo[q] && grad[q] > 0) || (x[q] >= P->hi[q] && grad[q] < 0) || !P->free[q];
                    any_held |= held[q];
                    all_held &= held[q];
                }
            }
            if (any_held) {
                if (all_held) break;
                for (Py_ssize_t a = 0; a < n; a++) {
                    double ka = held[a] ? 0.0 : 1.0;
                    for (Py_ssize_t c = 0; c < n; c++)
                        hc[a * n + c] = hess[a * n + c] * (ka * (held[c] ? 0.0 : 1.0));
                    hc[a * n + a] += held[a] ? 1.0 : 0.0;
                    gc[a] = grad[a] * ka;
                }
            } else {
                memcpy(hc, hess, sizeof(double) * n * n);
                memcpy(gc, grad, sizeof(double) * n);
            }
            for (Py_ssize_t q = 0; q < n; q++) diag[q] = hc[q * n + q] + 1e-9;
            int improved = 0;
            while (lam < 1e8) {
                memcpy(m, hc, sizeof(double) * n * n);
                for (Py_ssize_t q = 0; q < n; q++) {
                    m[q * n + q] += lam * diag[q];
                    step[q] = -gc[q];
                }
                if (cholesky_solve(m, step, n)) { *failed = 1; goto done; }
                for (Py_ssize_t q = 0; q < n; q++) xn[q] = clip(x[q] + step[q], P->lo[q], P->hi[q]);
                model_cost(P, xn, &trial);
                if (trial.cost < cur.cost) { improved = 1; break; }
                lam *= nu;
                nu *= 2.0;
            }
            if (!improved) break;
            double drop = cur.cost - trial.cost;
            double predicted = 0.0;
            for (Py_ssize_t q = 0; q < n; q++) predicted += step[q] * (lam * diag[q] * step[q] - gc[q]);
            double rho = predicted > 0 ? drop / predicted : 0.0;
            double f = 1.0 - pow(2.0 * rho - 1.0, 3);
            lam = lam * (f > 1.0 / 3.0 ? f : 1.0 / 3.0); /* Python's max(1/3, f), max(lam, 1e-9) */
            if (1e-9 > lam) lam = 1e-9;
            nu = 2.0;
            memcpy(x, xn, sizeof(double) * n);
            State tmp = cur; cur = trial; trial = tmp;
            if (drop <= rtol * cur.cost) break;
        }
    }
    memcpy(s_out, cur.s, sizeof(double) * np_);
done:
    PyMem_RawFree(work); PyMem_RawFree(held);
    state_free(&cur); state_free(&trial);
    return lam;
}

/* ---- `bridge.fit._fit_greedy_numpy`: where the bands go, then `lm` after each one ------------ */

enum { BELL = 0, LOW_SHELF = 1, HIGH_SHELF = 2 }; /* bridge.filters.KIND_* */

static const double EA[3][2][3] = { /* [kind][N, D][alpha, beta, c]: `_Structure`'s exponents of A */
    {{0, 0, 2}, {0, 0, -2}}, {{2, 1, 3}, {0, 1, 1}}, {{1, 2, 3}, {1, 0, 1}}};

typedef struct {   /* one cold fit: the grid, the target and what each slot (plugin band) offers */
    Problem grid;  /* what every stage's `lm` shares: grid, target, constants (no bands yet) */
    Py_ssize_t nb, npts;
    const double *target, *freqs;
    const double *slot_lo, *slot_hi;     /* (3, nb): [ln f, gain dB, ln Q] limits of each slot */
    const unsigned char *slot_free;      /* (3, nb) */
    const unsigned char *slot_kinds;     /* (nb): bit 1 << kind for each kind the fitter may use */
    const long long *slot_ntypes;        /* (nb): how many types the band offers */
    const unsigned char *end_lo, *end_hi; /* (npts): the grid's low and high ends */
    double gain_pull, q_pull, shelf_q_pull, q_home, shelf_q_home, stop_rms, lam0;
    int stage_iters, final_iters;
    double stage_rtol, final_rtol;
} Greedy;

typedef struct {   /* scratch for the stages, sized for all nb slots */
    double *ea, *lo, *hi, *pw, *ph, *x;
    unsigned char *free;
    long long *pair_i, *pair_j, *cross_i, *cross_j;
} StageBuf;

/* numpy's pairwise sum for up to 128 values (np.mean of a short array), so the shelves start
 * where the numpy placement starts them */
static double np_sum(const double *a, Py_ssize_t n) {
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    double r[8];
    for (int j = 0; j < 8; j++) r[j] = a[j];
    Py_ssize_t i;
    for (i = 8; i < n - (n % 8); i += 8)
        for (int j = 0; j < 8; j++) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[i];
    return res;
}

static double masked_mean(const double *a, const unsigned char *mask, Py_ssize_t n, double *tmp) {
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (mask[i]) tmp[m++] = a[i];
    return m ? np_sum(tmp, m) / (double)m : NAN;
}

/* `_Structure` + `_Model` (no anchor) for the placed slots idx[0..k) of kinds kk, then `lm` from
 * the per-band params par[b][3]; par gets the result, pred the predicted dB on the grid. */
static int stage(const Greedy *G, StageBuf *B, Py_ssize_t k, const long long *idx, const long long *kk,
                 double *par, double *pred, int iters, double rtol) {
    Py_ssize_t nb = G->nb, n = 3 * k, npairs = 0, ncross = 0;
    int all_free = 1;
    for (Py_ssize_t b = 0; b < k; b++) {
        int kind = (int)kk[b], bell = kind == BELL;
        for (int m = 0; m < 3; m++)
            for (int nd = 0; nd < 2; nd++) B->ea[(m * 2 + nd) * k + b] = EA[kind][nd][m];
        for (int r = 0; r < 3; r++) {
            B->lo[r * k + b] = G->slot_lo[r * nb + idx[b]];
            B->hi[r * k + b] = G->slot_hi[r * nb + idx[b]];
            B->free[r * k + b] = G->slot_free[r * nb + idx[b]];
            all_free &= B->free[r * k + b] != 0;
            B->x[r * k + b] = par[3 * b + r];
        }
        double pull = bell ? G->q_pull : G->shelf_q_pull;
        B->pw[b] = 0.0;
        B->pw[k + b] = G->gain_pull * G->gain_pull;
        B->pw[2 * k + b] = pull * pull * (double)B->free[2 * k + b];
        B->ph[b] = B->ph[k + b] = 0.0;
        B->ph[2 * k + b] = log(bell ? G->q_home : G->shelf_q_home);
    }
    for (Py_ssize_t i = 0; i < k; i++)
        for (Py_ssize_t j = 0; j < k; j++) {
            if (j > i && kk[i] == BELL && kk[j] == BELL) { B->pair_i[npairs] = i; B->pair_j[npairs++] = j; }
            if (kk[i] == LOW_SHELF && kk[j] == HIGH_SHELF) { B->cross_i[ncross] = i; B->cross_j[ncross++] = j; }
        }
    Problem P = G->grid; /* then the placed bands (pc = 0: no anchor) */
    P.k = k; P.n = n; P.ea = B->ea; P.lo = B->lo; P.hi = B->hi; P.pw = B->pw; P.ph = B->ph; P.free = B->free;
    P.pair_i = B->pair_i; P.pair_j = B->pair_j; P.cross_i = B->cross_i; P.cross_j = B->cross_j;
    P.npairs = npairs; P.ncross = ncross;
    int failed = 0;
    lm(&P, B->x, pred, iters, rtol, G->lam0, all_free, &failed);
    if (failed) return failed;
    for (Py_ssize_t i = 0; i < G->npts; i++) pred[i] *= P.db;
    for (Py_ssize_t b = 0; b < k; b++)
        for (int r = 0; r < 3; r++) par[3 * b + r] = B->x[r * k + b];
    return 0;
}

/* `_peak_width_q`: the Q of the residual bump around grid point i, from its half-height width */
static double peak_width_q(const double *r, Py_ssize_t n, Py_ssize_t i, const double *freqs) {
    double ri = r[i];
    Py_ssize_t a = 0, b = n - 1;
#define SAME(j) (ri != 0.0 && r[j] * ri >= 0.5 * ri * ri)
    for (Py_ssize_t j = i - 1; j >= 0; j--)
        if (!SAME(j)) { a = j + 1; break; }
    for (Py_ssize_t j = i + 1; j < n; j++)
        if (!SAME(j)) { b = j - 1; break; }
#undef SAME
    double bw = log2(freqs[b] / freqs[a]);
    if (bw < 0.1) bw = 0.1;
    return 1.0 / (2.0 * sinh(log(2.0) / 2.0 * bw)); /* bridge.filters.q_from_octaves, analog */
}

/* Places bands like `_fit_greedy_numpy`; returns k (bands placed) or -1 (a stage's step matrix
 * was not positive definite: the caller places them in numpy), -2 (out of memory). */
static Py_ssize_t greedy(const Greedy *G, const long long *usable, Py_ssize_t nusable,
                         long long *kinds_out, long long *idx_out, double *p_out) {
    Py_ssize_t nb = G->nb, npts = G->npts, k = 0;
    StageBuf B = {0};
    double *mem = PyMem_RawCalloc((size_t)(6 * nb + 6 * 3 * nb + 4 * npts), sizeof(double));
    long long *imem = PyMem_RawCalloc((size_t)(4 * nb * nb + nb + 1), sizeof(long long));
    unsigned char *isfree = PyMem_RawCalloc((size_t)(4 * nb + 1), 1);
    if (!mem || !imem || !isfree) {
        PyMem_RawFree(mem); PyMem_RawFree(imem); PyMem_RawFree(isfree);
        return -2;
    }
    B.ea = mem; B.lo = B.ea + 6 * nb; B.hi = B.lo + 3 * nb; B.pw = B.hi + 3 * nb; B.ph = B.pw + 3 * nb;
    B.x = B.ph + 3 * nb;
    double *par = B.x + 3 * nb, *pred = par + 3 * nb, *resid = pred + npts, *tmp = resid + npts;
    double *sorted = tmp + npts;
    B.pair_i = imem; B.pair_j = B.pair_i + nb * nb; B.cross_i = B.pair_j + nb * nb; B.cross_j = B.cross_i + nb * nb;
    long long *kk = B.cross_j + nb * nb;
    B.free = isfree + nb;
    Py_ssize_t nfree = 0, result = -1;
    for (Py_ssize_t i = 0; i < nb; i++) kinds_out[i] = -1;
    for (Py_ssize_t u = 0; u < nusable; u++)
        if (usable[u] >= 0 && usable[u] < nb && !isfree[usable[u]]) { isfree[usable[u]] = 1; nfree++; }
    /* the median of the target (np.sort, then the middle one or two) */
    memcpy(sorted, G->target, sizeof(double) * npts);
    for (Py_ssize_t i = 1; i < npts; i++) {
        double v = sorted[i];
        Py_ssize_t j = i;
        for (; j > 0 && sorted[j - 1] > v; j--) sorted[j] = sorted[j - 1];
        sorted[j] = v;
    }
    double mid = 0.5 * (sorted[(npts - 1) / 2] + sorted[npts / 2]);

#define PLACE(slot, kind, f, g, q) do {                                                          \
        Py_ssize_t s_ = (slot);                                                                  \
        kinds_out[s_] = (kind); kk[k] = (kind); idx_out[k] = s_; isfree[s_] = 0; nfree--;        \
        par[3 * k] = clip(log(f), G->slot_lo[s_], G->slot_hi[s_]);                               \
        par[3 * k + 1] = clip((g), G->slot_lo[nb + s_], G->slot_hi[nb + s_]);                    \
        par[3 * k + 2] = clip(log(q), G->slot_lo[2 * nb + s_], G->slot_hi[2 * nb + s_]);         \
        k++;                                                                                     \
    } while (0)

    /* 1. shelves for the band ends: the slot offering fewest types, lowest (low) or highest (high) */
    Py_ssize_t best = -1;
    for (Py_ssize_t i = 0; i < nb; i++)
        if (isfree[i] && (G->slot_kinds[i] & (1 << LOW_SHELF))
            && (best < 0 || G->slot_ntypes[i] < G->slot_ntypes[best]))
            best = i;
    if (best >= 0)
        PLACE(best, LOW_SHELF, 150.0, masked_mean(G->target, G->end_lo, npts, tmp) - mid, 0.7071);
    best = -1;
    for (Py_ssize_t i = nb - 1; i >= 0; i--)
        if (isfree[i] && (G->slot_kinds[i] & (1 << HIGH_SHELF))
            && (best < 0 || G->slot_ntypes[i] < G->slot_ntypes[best]))
            best = i;
    if (best >= 0)
        PLACE(best, HIGH_SHELF, 6000.0, masked_mean(G->target, G->end_hi, npts, tmp) - mid, 0.7071);
    if (k && stage(G, &B, k, idx_out, kk, par, pred, G->stage_iters, G->stage_rtol))
        goto out;
    /* 2. bells (or whatever kind a slot offers) at the largest residual, re-optimising all */
    while (nfree > 0) {
        double rms = 0.0, peak = -1.0;
        Py_ssize_t at = 0;
        for (Py_ssize_t i = 0; i < npts; i++) {
            resid[i] = G->target[i] - pred[i];
            double w = G->grid.sw[i] * resid[i];
            rms += w * w;
            if (fabs(resid[i]) > peak) { peak = fabs(resid[i]); at = i; }
        }
        if (sqrt(rms) < G->stop_rms) break;
        double lnf = log(G->freqs[at]);
        Py_ssize_t slot = -1;
        double slot_d = 0.0;
        int slot_nobell = 0;
        for (Py_ssize_t s = 0; s < nb; s++) { /* min over (distance, no bell, slot) */
            if (!isfree[s]) continue;
            double d = G->slot_lo[s] - lnf, d2 = lnf - G->slot_hi[s];
            if (d2 > d) d = d2;
            if (d < 0.0) d = 0.0;
            int nobell = !(G->slot_kinds[s] & (1 << BELL));
            if (slot < 0 || d < slot_d || (d == slot_d && nobell < slot_nobell)) {
                slot = s; slot_d = d; slot_nobell = nobell;
            }
        }
        unsigned char ks = G->slot_kinds[slot];
        int kind = (ks & (1 << BELL)) ? BELL : (ks & (1 << LOW_SHELF)) ? LOW_SHELF : HIGH_SHELF;
        double f = exp(clip(lnf, G->slot_lo[slot], G->slot_hi[slot]));
        PLACE(slot, kind, f, resid[at], peak_width_q(resid, npts, at, G->freqs));
        if (stage(G, &B, k, idx_out, kk, par, pred, G->stage_iters, G->stage_rtol))
            goto out;
    }
#undef PLACE
    if (stage(G, &B, k, idx_out, kk, par, pred, G->final_iters, G->final_rtol))
        goto out;
    for (Py_ssize_t b = 0; b < k; b++)
        for (int r = 0; r < 3; r++) p_out[r * k + b] = par[3 * b + r];
    result = k;
out:
    PyMem_RawFree(mem); PyMem_RawFree(imem); PyMem_RawFree(isfree);
    return result;
}

static void release(Py_buffer *b, int n) { /* the buffers an entry point's arguments took */
    for (int i = 0; i < n; i++)
        if (b[i].obj) PyBuffer_Release(&b[i]);
}

static int need(Py_buffer *b, Py_ssize_t count, Py_ssize_t item, const char *name) {
    if (b->len != count * item) {
        PyErr_Format(PyExc_ValueError, "_lmcore.lm: %s has %zd bytes, expected %zd", name, b->len, count * item);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(lm_doc,
"lm(x, s_out, lo, hi, free, pw, ph, ea, tan2, sw, sw_db, sw_target, pair_i, pair_j, cross_i, cross_j,\n"
"   k, pc, log_pi_sr, db, h, cancel_pull, cancel_width, cancel_reach, cross_pull, cross_margin,\n"
"   max_iter, rtol, lam, all_free) -> float | None\n\n"
"bridge.fit._lm in C. Buffers are C-contiguous float64 (free: uint8, pair/cross: int64). x (3k)\n"
"is clipped and improved in place; s_out (npts) receives the summed ln power ratio at the end.\n"
"Returns the final damping, or None when a step matrix was not positive definite (x is then\n"
"partly updated: the caller runs its numpy loop from its own copy).");

static PyObject *py_lm(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer b[16];
    memset(b, 0, sizeof(b));
    Py_ssize_t k;
    double pc, log_pi_sr, db, h, pen[5], rtol, lam;
    int max_iter, all_free;
    if (!PyArg_ParseTuple(args, "w*w*y*y*y*y*y*y*y*y*y*y*y*y*y*y*nddddddddd" "iddp",
                          &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10],
                          &b[11], &b[12], &b[13], &b[14], &b[15], &k, &pc, &log_pi_sr, &db, &h,
                          &pen[0], &pen[1], &pen[2], &pen[3], &pen[4], &max_iter, &rtol, &lam, &all_free))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = 3 * k, npts = b[8].len / (Py_ssize_t)sizeof(double);
    if (k < 0 || need(&b[0], n, 8, "x") || need(&b[1], npts, 8, "s_out") || need(&b[2], n, 8, "lo")
        || need(&b[3], n, 8, "hi") || need(&b[4], n, 1, "free") || need(&b[5], n, 8, "pw")
        || need(&b[6], n, 8, "ph") || need(&b[7], 6 * k, 8, "ea") || need(&b[9], npts, 8, "sw")
        || need(&b[10], npts, 8, "sw_db") || need(&b[11], npts, 8, "sw_target")
        || need(&b[13], b[12].len / 8, 8, "pair_j") || need(&b[15], b[14].len / 8, 8, "cross_j"))
        goto out;
    Problem P = {
        .k = k, .n = n, .npts = npts, .db = db, .h = h,
        .ea = b[7].buf, .tan2 = b[8].buf, .sw = b[9].buf, .sw_db = b[10].buf, .sw_target = b[11].buf,
        .lo = b[2].buf, .hi = b[3].buf, .pw = b[5].buf, .ph = b[6].buf, .free = b[4].buf,
        .pc = pc, .log_pi_sr = log_pi_sr,
        .pair_i = b[12].buf, .pair_j = b[13].buf, .cross_i = b[14].buf, .cross_j = b[15].buf,
        .npairs = b[12].len / 8, .ncross = b[14].len / 8,
        .cancel_pull = pen[0], .cancel_width = pen[1], .cancel_reach = pen[2],
        .cross_pull = pen[3], .cross_margin = pen[4],
    };
    for (Py_ssize_t q = 0; q < P.npairs; q++)
        if (P.pair_i[q] < 0 || P.pair_i[q] >= k || P.pair_j[q] < 0 || P.pair_j[q] >= k) {
            PyErr_SetString(PyExc_ValueError, "_lmcore.lm: a bell pair index is out of range");
            goto out;
        }
    for (Py_ssize_t q = 0; q < P.ncross; q++)
        if (P.cross_i[q] < 0 || P.cross_i[q] >= k || P.cross_j[q] < 0 || P.cross_j[q] >= k) {
            PyErr_SetString(PyExc_ValueError, "_lmcore.lm: a shelf index is out of range");
            goto out;
        }
    int failed = 0;
    double got;
    Py_BEGIN_ALLOW_THREADS
    got = lm(&P, b[0].buf, b[1].buf, max_iter, rtol, lam, all_free, &failed);
    Py_END_ALLOW_THREADS
    if (failed == 2)
        PyErr_NoMemory();
    else
        result = failed ? Py_NewRef(Py_None) : PyFloat_FromDouble(got);
out:
    release(b, 16);
    return result;
}

PyDoc_STRVAR(greedy_doc,
"greedy(kinds_out, idx_out, p_out, usable, target, freqs, tan2, sw, sw_db, sw_target, slot_lo, slot_hi,\n"
"       slot_free, slot_kinds, slot_ntypes, end_lo, end_hi, log_pi_sr, db, h, cancel_pull, cancel_width,\n"
"       cancel_reach, cross_pull, cross_margin, gain_pull, q_pull, shelf_q_pull, q_home, shelf_q_home,\n"
"       stop_rms, lam0, stage_iters, stage_rtol, final_iters, final_rtol) -> int | None\n\n"
"bridge.fit._fit_greedy_numpy in C. Buffers are C-contiguous: float64, except usable, idx_out,\n"
"kinds_out, slot_ntypes (int64) and slot_free, slot_kinds, end_lo, end_hi (uint8). Fills\n"
"kinds_out (nb: the kind per slot, -1 unused), idx_out (the k placed slots in placement order)\n"
"and p_out[:3k] (the (3, k) params) and returns k; None when a stage's step matrix was not\n"
"positive definite (the caller places the bands in numpy).");

static PyObject *py_greedy(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer b[17];
    memset(b, 0, sizeof(b));
    Greedy G = {0};
    Problem *P = &G.grid;
    int stage_iters, final_iters;
    double stage_rtol, final_rtol;
    if (!PyArg_ParseTuple(args, "w*w*w*y*y*y*y*y*y*y*y*y*y*y*y*y*y*ddddddddddddddd" "idid",
                          &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10],
                          &b[11], &b[12], &b[13], &b[14], &b[15], &b[16], &P->log_pi_sr, &P->db, &P->h,
                          &P->cancel_pull, &P->cancel_width, &P->cancel_reach, &P->cross_pull,
                          &P->cross_margin, &G.gain_pull, &G.q_pull,
                          &G.shelf_q_pull, &G.q_home, &G.shelf_q_home, &G.stop_rms, &G.lam0,
                          &stage_iters, &stage_rtol, &final_iters, &final_rtol))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t nb = b[0].len / 8, npts = b[4].len / 8;
    if (need(&b[1], nb, 8, "idx_out") || need(&b[2], 3 * nb, 8, "p_out") || need(&b[5], npts, 8, "freqs")
        || need(&b[6], npts, 8, "tan2") || need(&b[7], npts, 8, "sw") || need(&b[8], npts, 8, "sw_db")
        || need(&b[9], npts, 8, "sw_target") || need(&b[10], 3 * nb, 8, "slot_lo")
        || need(&b[11], 3 * nb, 8, "slot_hi") || need(&b[12], 3 * nb, 1, "slot_free")
        || need(&b[13], nb, 1, "slot_kinds") || need(&b[14], nb, 8, "slot_ntypes")
        || need(&b[15], npts, 1, "end_lo") || need(&b[16], npts, 1, "end_hi"))
        goto out;
    if (npts < 1 || b[3].len % 8) {
        PyErr_SetString(PyExc_ValueError, "_lmcore.greedy: an empty grid or a ragged usable list");
        goto out;
    }
    G.nb = nb; G.npts = P->npts = npts;
    G.target = b[4].buf; G.freqs = b[5].buf;
    P->tan2 = b[6].buf; P->sw = b[7].buf; P->sw_db = b[8].buf; P->sw_target = b[9].buf;
    G.slot_lo = b[10].buf; G.slot_hi = b[11].buf; G.slot_free = b[12].buf;
    G.slot_kinds = b[13].buf; G.slot_ntypes = b[14].buf; G.end_lo = b[15].buf; G.end_hi = b[16].buf;
    G.stage_iters = stage_iters; G.final_iters = final_iters;
    G.stage_rtol = stage_rtol; G.final_rtol = final_rtol;
    Py_ssize_t k;
    Py_BEGIN_ALLOW_THREADS
    k = greedy(&G, b[3].buf, b[3].len / 8, b[0].buf, b[1].buf, b[2].buf);
    Py_END_ALLOW_THREADS
    if (k == -2)
        PyErr_NoMemory();
    else
        result = k < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(k);
out:
    release(b, 17);
    return result;
}

PyDoc_STRVAR(db_at_doc,
"db_at(out, x, kinds, tan2, log_pi_sr, db, h) -> None\n\n"
"bridge.fit._Model.db_at in C: the summed dB response of k bands (kinds: int64, 0 bell, 1 low\n"
"shelf, 2 high shelf; x: float64 [ln f (k), gain dB (k), ln Q (k)]) at the grid points whose\n"
"tan^2(w/2) are tan2, into out (as many float64).");

static PyObject *py_db_at(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer b[4];
    memset(b, 0, sizeof(b));
    double log_pi_sr, db, h;
    if (!PyArg_ParseTuple(args, "w*y*y*y*ddd", &b[0], &b[1], &b[2], &b[3], &log_pi_sr, &db, &h))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t k = b[2].len / 8, n = b[3].len / 8;
    if (need(&b[0], n, 8, "out") || need(&b[1], 3 * k, 8, "x"))
        goto out;
    const double *x = b[1].buf, *tan2 = b[3].buf;
    const long long *kinds = b[2].buf;
    double *o = b[0].buf;
    for (Py_ssize_t b_ = 0; b_ < k; b_++)
        if (kinds[b_] < BELL || kinds[b_] > HIGH_SHELF) {
            PyErr_SetString(PyExc_ValueError, "_lmcore.db_at: a kind is not 0, 1 or 2");
            goto out;
        }
    for (Py_ssize_t i = 0; i < n; i++) o[i] = 0.0;
    for (Py_ssize_t j = 0; j < k; j++) { /* `_Model.db_at`: alpha, beta, c of N and D, then y */
        const double (*e)[3] = EA[kinds[j]];
        double g = x[k + j], lnq2 = -2.0 * x[2 * k + j];
        double t0 = tan(exp(x[j] + log_pi_sr));
        double t02 = t0 * t0, abc[2][3];
        for (int nd = 0; nd < 2; nd++) {
            abc[nd][0] = exp(h * e[nd][0] * g);
            abc[nd][1] = exp(h * e[nd][1] * g);
            abc[nd][2] = exp(h * e[nd][2] * g + lnq2);
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            double y = tan2[i] / t02, xx[2];
            for (int nd = 0; nd < 2; nd++) {
                double p = abc[nd][0] - abc[nd][1] * y;
                xx[nd] = p * p + abc[nd][2] * y;
            }
            o[i] += log(xx[0] / xx[1]);
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) o[i] *= db;
    result = Py_NewRef(Py_None);
out:
    release(b, 4);
    return result;
}

static PyMethodDef methods[] = {
    {"lm", py_lm, METH_VARARGS, lm_doc},
    {"greedy", py_greedy, METH_VARARGS, greedy_doc},
    {"db_at", py_db_at, METH_VARARGS, db_at_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_lmcore", .m_doc = "bridge.fit's Levenberg-Marquardt loop and greedy placement in C (optional).",
    .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__lmcore(void) { return PyModule_Create(&module); }
