defmodule DistributedSupervisor.ValidationError do
  @moduledoc """
  Raised by `DistributedSupervisor.start_link/1` (and `child_spec/1`) for a
  missing, unknown or ill-typed option.

  It has the fields and the messages of `NimbleOptions.ValidationError`, which
  upstream `distributed_supervisor` raises. When the application has
  NimbleOptions loaded, that very exception is raised instead; this shim has no
  dependencies, so without it this one is raised:

      iex> DistributedSupervisor.start_link([])
      ** (DistributedSupervisor.ValidationError) required :name option not found, received options: []

      iex> DistributedSupervisor.start_link(name: Foo, monitor_nodes: :sometimes)
      ** (DistributedSupervisor.ValidationError) invalid value for :monitor_nodes option: expected one of [false, true, :cluster], got: :sometimes
  """
  defexception [:message, :key, :value, keys_path: []]

  @type t :: %__MODULE__{
          message: String.t(),
          key: atom() | nil,
          value: term(),
          keys_path: [atom()]
        }
end
