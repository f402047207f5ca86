# Input functions of the rules (Snakemake wants them apart from the rules): what each job reads,
# from the method registry (lsap.methods), the layout (lsap.io.layout) and the job keys (lsap.keys).
STUDENT_TOKENIZER = f"{layout.tokenizer(RUN, 'student')}/tokenizer.json"
STUDENT_SHARDS = f"{layout.shards(RUN, 'student')}/train.json"
# a selection's scoring spec id: one of the registry's data selections, then its key (keys.selection_id)
SELECTION_SPEC = "(" + "|".join(methods.SELECTIONS) + r")-[0-9a-f]+"


def key(job):
    """The rule's one config param: the hash of exactly what the job reads (lsap.keys)."""
    return lambda w: keys.key(config, job, **dict(w.items()))


def _reference_tokenizer(w):
    return layout.tokenizer(RUN, config["references"][w.name]["tokenizer"])


def _trained(role):
    """The summary of a model this run trains, when a method's teacher is one (else nothing)."""
    spec = config["students"]["teachers"][role]
    return [f"{layout.reference(RUN, spec['name'])}/summary.json"] if spec["kind"] == "trained" else []


def student_inputs(w):
    """A student's inputs, from the method registry (lsap.stages.inputs): its teachers, the Σ∩ tables,
    its targets cache and its data selection, each only where its method reads it."""
    return lsap_inputs.student(config, w.method, w.seed)


def _flag(name, path):
    return f"--{name} {os.path.dirname(path) if name == 'targets' else path}" if path else ""


def CAPTION(name):
    """A figure's caption (or the report's landing page), written by the report rule from the run
    (lsap.report.pages) and read by `snakemake --report` after it: absolute, as Snakemake reads a
    caption path relative to the rule's file."""
    return os.path.join(workflow.basedir, layout.report_tables(RUN), lsap_tables.CAPTIONS, f"{name}.rst")
