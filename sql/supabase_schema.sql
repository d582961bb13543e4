-- Tables of the optional Supabase REST sink (zeitflow/io/supabase.py, architecture §3).
-- Apply once in the Supabase SQL editor (or psql against the project's database). Re-running is safe.
--
-- Security: the sink writes with the project's service-role key, which bypasses row-level security.
-- Use that key only server-side (the flow's environment: SUPABASE_URL, SUPABASE_SERVICE_KEY), never in a
-- browser or frontend. Row-level security is enabled below, so the anon/authenticated roles see nothing
-- until you add explicit read policies, for example:
--   create policy "read runs" on public.zeitflow_runs for select to authenticated using (true);
--   create policy "read metrics" on public.zeitflow_metrics for select to authenticated using (true);

create table if not exists public.zeitflow_runs (
    run_id      text primary key,
    project     text,
    flow        text,
    status      text,
    started_at  timestamptz,
    finished_at timestamptz,
    summary     jsonb not null default '{}'::jsonb
);

create index if not exists zeitflow_runs_project_idx on public.zeitflow_runs (project);

-- One row per (model, channel, n_avg) of the overall metrics table (stages.md §10.2).
create table if not exists public.zeitflow_metrics (
    run_id        text not null references public.zeitflow_runs (run_id) on delete cascade,
    model         text not null,
    channel       text not null,
    n_avg         integer not null,
    delta_minutes double precision,
    n_pairs       integer,
    mae           double precision,
    mse           double precision,
    rmse          double precision,
    mape          double precision,
    mape_excluded integer,
    smape         double precision,
    wape          double precision,
    nrmse         double precision,
    mase          double precision,
    r2            double precision,
    skill_mae     double precision,
    primary key (run_id, model, channel, n_avg)
);

create index if not exists zeitflow_metrics_model_idx on public.zeitflow_metrics (model, channel);

alter table public.zeitflow_runs enable row level security;
alter table public.zeitflow_metrics enable row level security;
