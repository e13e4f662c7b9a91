defmodule DistributedSupervisor.MixProject do
  use Mix.Project

  # One version for the whole project: the repository's VERSION file (also in
  # `dsup-node --version` and dsup.pc).
  @version __DIR__ |> Path.join("../VERSION") |> File.read!() |> String.trim()
  @external_resource Path.join(__DIR__, "../VERSION")

  def project do
    [
      app: :distributed_supervisor,
      version: @version,
      elixir: "~> 1.14",
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: [],
      description:
        "DistributedSupervisor API (hex distributed_supervisor 0.5) backed by dsup C-nodes"
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  # test/support is compiled to ebin so that :peer nodes can load it too.
  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
