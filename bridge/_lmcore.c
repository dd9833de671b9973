/* The fitter's inner loop in C: `bridge.fit._lm` and the `_Model` it drives, step for step.
 *
 * Why: a ReaEQ fit is ~17 Levenberg-Marquardt iterations on 12 parameters and 96 grid points.
 * In numpy each iteration is ~60 calls on arrays of a few hundred values, so the fit costs call
 * overhead, not arithmetic (bench/fit_quality.py times both loops on every mapping). This file does
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
    for (int i = 0; i < 16; i++)
        if (b[i].obj) PyBuffer_Release(&b[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"lm", py_lm, METH_VARARGS, lm_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_lmcore", .m_doc = "bridge.fit's Levenberg-Marquardt loop in C (optional).",
    .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__lmcore(void) { return PyModule_Create(&module); }
