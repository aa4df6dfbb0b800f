# Train scVI. Checkpoints go to results/{run}/checkpoints/, which is not an output: Snakemake
# deletes the outputs of a failed job, and the checkpoint must survive to resume from. Under a
# default storage provider they are also mirrored to <prefix>/results/{run}/checkpoints/.
rule train:
    input:
        prepared="results/{run}/prepared",
        registry="results/{run}/registry.json",
    output:
        model=directory("results/{run}/model"),
        history="results/{run}/history.csv",
        # Computed while the model is in memory: export and report then need no torch.
        latent="results/{run}/latent.npy",
    log:
        "results/{run}/logs/train.log",
    benchmark:
        "results/{run}/benchmarks/train.tsv"
    conda:
        train_conda_env
    threads: run_threads
    resources:
        mem_mb=run_mem_mb,
        runtime=run_runtime,
        gpu=run_gpu,
        # The same GPUs under the names snakemake-executor-plugin-googlebatch (accelerators) and
        # snakemake-executor-plugin-aws-batch (the job's GPU resource requirement) read.
        nvidia_gpu=run_gpu,
        _gpus=run_gpu,
        # Several processes (train.devices/nodes) on SLURM: one task each, srun inside the job.
        tasks=multi_process(train_processes),
        nodes=multi_process(train_nodes),
        mpi=multi_process(lambda wildcards: "srun"),
        cpus_per_task=multi_process(rank_threads),
        tasks_per_gpu=multi_process(gpu_tasks),
    params:
        model=lambda wildcards: run_config(wildcards)["model"],
        train=lambda wildcards: training_parameters(run_config(wildcards)),
        seed=lambda wildcards: run_config(wildcards)["seed"],
        model_class=lambda wildcards: run_config(wildcards)["model_class"],
        accelerator=run_accelerator,
        # Beside the outputs (so under a module's prefix too), but not an output itself.
        checkpoint_dir=lambda wildcards, output: checkpoint_dir(output),
        # With the outputs in object storage: the checkpoints mirrored there too (a cloud node's
        # disk goes with the node), so a preempted job resumes on the next one.
        checkpoint_store=checkpoint_store,
        # Changes no result, so it must not rerun the job (see checkpoint_seconds).
        checkpoint_every_seconds=checkpoint_seconds,
        # A change of the number of processes reruns the job (other random streams per rank).
        devices=train_devices,
        nodes=train_nodes,
        launcher=train_launcher,
        # Experiment trackers (train.logger): one tracked run per run, named after it.
        logger=train_logger,
        log_every_n_steps=log_every_n_steps,
        run_name=tracked_run_name,
    script:
        "../../scripts/train.py"
