/**
 * Output paths of trace files, checked before a run starts: a path that cannot be written is
 * bad input (EMU_ERR_BAD_PARAM naming the option), never a failure after the run.
 */
import { badParam } from '../errors.js';
import { outputPathProblem } from '../util/output-file.js';

/** Throw EMU_ERR_BAD_PARAM naming `param` (e.g. `--trace`) unless `file` can be written atomically. */
export function checkOutputPath(param: string, file: string): void {
  const why = outputPathProblem(file);
  if (why !== undefined) throw badParam(param, why);
}
