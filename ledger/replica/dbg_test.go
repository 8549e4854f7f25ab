package replica
import ("go.etcd.io/raft/v3";"log";"os")
func init(){ if os.Getenv("RDBG")!="" { l:=&raft.DefaultLogger{Logger: log.New(os.Stderr,"raft ",0)}; l.EnableDebug(); dbgLogger=l } }
var dbgLogger raft.Logger
