/* Divergence detection: the loss bound and the one-line verdict (see diverge.h). */
#include "ewc/diverge.h"

#include <math.h>

double diverge_bound(int classes) { return DIVERGE_FACTOR * log(classes > 2 ? classes : 2); }

EwcStatus diverge_check(double loss, int classes, int task, int epoch, int step) {
    double bound = diverge_bound(classes);
    if (isfinite(loss) && loss <= bound) return EWC_OK;
    if (isfinite(loss))
        ewc_error_set("diverged at task %d, epoch %d, step %d: loss %.3g > bound %.3g (%.0f x ln "
                      "%d classes); lower --lr or --lambda, or use --penalty-step implicit", task,
                      epoch, step, loss, bound, DIVERGE_FACTOR, classes);
    else
        ewc_error_set("diverged at task %d, epoch %d, step %d: loss is %s; lower --lr or "
                      "--lambda, or use --penalty-step implicit", task, epoch, step,
                      isnan(loss) ? "NaN" : loss > 0 ? "+Inf" : "-Inf");
    return EWC_ENAN;
}
