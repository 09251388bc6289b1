import os, sys, time
hz = os.sysconf("SC_CLK_TCK")
def snap():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try:
            cmd = open(f"/proc/{pid}/cmdline","rb").read().replace(b"\0",b" ")[:50].decode(errors="replace")
            for tid in os.listdir(f"/proc/{pid}/task"):
                st = open(f"/proc/{pid}/task/{tid}/stat").read()
                comm = st[st.index("(")+1:st.rindex(")")]
                f = st[st.rindex(")")+2:].split()
                out[(pid,tid)] = (cmd, comm, int(f[11])+int(f[12]), f[16], f[38], f[37])
        except Exception: pass
    return out
end = time.time()+float(sys.argv[1]); win=float(sys.argv[2])
while time.time()<end:
    a = snap(); t0=time.time(); time.sleep(win); b = snap(); dt=time.time()-t0
    rows=[((v[2]-a[k][2])/hz/dt*100,k,v) for k,v in b.items() if k in a]
    tot=sum(r[0] for r in rows)
    print(f"--- t={time.strftime('%X')} total {tot:.0f}%")
    for c,k,v in sorted(rows, reverse=True)[:12]:
        if c>=1: print(f"{c:6.1f}% {k[0]}/{k[1]} ni {v[3]} pol {v[4]} {v[1]!r:18} {v[0]}")
